"""Guarantee 5: a hostile flood is contained: valid events applied, the rest dead-lettered.

About 10% of the records of a stream are malformed on purpose: bad JSON,
invalid UTF-8, 1,000-deep arrays, a too-deep ``error_detail``, wrong types,
unknown types, empty arrays, scalars, oversized strings past the record limit
and 10 MB records; arrays mix valid and invalid items. Hostile but *valid*
events ride along too: events for runs nobody created, timestamps in year 1
and 9999, and a 500 KB id (the contract puts no length limit on ids, see
docs/reliability.md). While ``projector serve`` ingests the flood:

* the database ends equal to the pure fold of the valid events;
* every rejected record or array item is on the dead-letter topic, with a
  reason code, exactly once, and counted in the ``deadletters`` table;
* the serve process's RSS (VmRSS) stays under a generous bound (reported);
* status requests keep answering within 1 s.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from projector.store.writer import Store
from projector.tools.simulate import generate
from schemas import decode_value
from tests.fixtures.kafka import consume_all, topic_of
from tests.fixtures.processes import projector_env
from tests.reliability.helpers import Serve, campaign_owner, dump, fold_dicts, read_db, rss_kib

RSS_BOUND_MIB = 1024
REASONS = {
    "invalid_json", "not_an_object", "empty_array", "unknown_type", "missing_field",
    "invalid_field", "too_large", "too_deep",
}  # fmt: skip


def malformed(rng: random.Random, valid: list[dict]) -> list[tuple[bytes, set[str]]]:
    """One of each kind of bad record, with the reason codes it must get."""
    base = rng.choice(valid)
    deep_detail = {"a": 1}
    for _ in range(40):
        deep_detail = {"d": deep_detail}
    claimed = next(e for e in valid if e["type"] == "run.claimed")
    return [
        (b"{not json", {"invalid_json"}),
        (b"\xff\xfe\x00garbage", {"invalid_json"}),
        (b"[" * 1000 + b"]" * 1000, {"too_deep", "invalid_json", "not_an_object"}),
        (orjson.dumps({**base, "error_detail": deep_detail, "type": "batch.completed"}),
         {"too_deep", "invalid_field", "missing_field"}),
        (orjson.dumps({**base, "occurred_at": True}), {"invalid_field"}),
        (orjson.dumps({**base, "event_id": 7}), {"invalid_field"}),
        (orjson.dumps({**claimed, "run_id": {"nested": ["x"]}}), {"invalid_field"}),
        (orjson.dumps({**base, "type": "run.exploded"}), {"unknown_type"}),
        (orjson.dumps({k: v for k, v in base.items() if k != "type"}), {"missing_field"}),
        (b"[]", {"empty_array"}),
        (b"42", {"not_an_object"}),
        (b'"just a string"', {"not_an_object"}),
        (b'{"event_id": "' + b"x" * 1_200_000 + b'"}', {"too_large"}),
        (orjson.dumps({**base, "name": "n" * 1_100_000}), {"too_large"}),
    ]  # fmt: skip


def hostile_valid(rng: random.Random, valid: list[dict], n: int) -> list[dict]:
    """Valid by the contract, unusual in fact: unknown runs, extreme timestamps, a huge id."""
    out = []
    for i in range(n):
        e = dict(rng.choice(valid))
        e["event_id"] = str(uuid.UUID(int=rng.getrandbits(128)))
        kind = i % 3
        if kind == 0 and "run_id" in e:
            e["run_id"] = f"run_nobody_{i}"
        elif kind == 1:
            e["occurred_at"] = rng.choice(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z"])
        else:
            e["occurred_at"] = "2100-01-01T00:00:00+14:00"
        out.append(e)
    defined = next(e for e in valid if e["type"] == "campaign.defined")
    out.append({**defined, "event_id": str(uuid.uuid4()), "campaign_id": "c" * 500_000})
    return out


def build_records(seed: int) -> tuple[list[tuple[str, bytes, bytes]], list[dict], int]:
    """(topic-kind key, key, value) records, the valid events, and the expected dead letters."""
    rng = random.Random(seed)
    valid = list(generate(campaigns=4, recipients=400, seed=seed))
    valid += hostile_valid(rng, valid, 60)
    rng.shuffle(valid)
    records: list[tuple[str | None, bytes, bytes]] = []
    i = 0
    while i < len(valid):
        if rng.random() < 0.1:  # an array record of 2-6 events, sometimes with bad items
            group = valid[i : i + rng.randint(2, 6)]
            i += len(group)
            items = [orjson.dumps(e) for e in group]
            if rng.random() < 0.5:
                items.insert(
                    rng.randrange(len(items) + 1), rng.choice([b"17", b"{}", b'{"type": "nope"}'])
                )
            # Arrays are one record on one topic: route by their first valid event.
            records.append(
                (group[0]["type"], group[0]["campaign_id"].encode(), b"[" + b",".join(items) + b"]")
            )
        else:
            e = valid[i]
            i += 1
            records.append((e["type"], e["campaign_id"].encode()[:200], orjson.dumps(e)))
    kinds = malformed(rng, valid)
    n_bad = len(records) // 9  # ~10% of all records
    for j in range(n_bad):
        value, _ = kinds[j % len(kinds)]
        records.insert(rng.randrange(len(records) + 1), (None, b"poison", value))
    for _ in range(3):  # 10 MB records
        records.insert(
            rng.randrange(len(records) + 1),
            (None, b"poison", b"{" + b" " * (10 * 1024 * 1024) + b"}"),
        )
    expected_letters = sum(len(rejects(v)) for _, _, v in records)
    for value, codes in kinds:
        got = set(rejects(value))
        assert got and got <= codes, (value[:80], got)
    return records, valid, expected_letters


def rejects(value: bytes) -> list[str]:
    """Reason codes the projector must give a record: the decoder's, or one for the whole
    record when the decoder itself fails (``[[[...]]]`` 256-1024 deep parses, then cannot be
    re-serialised: orjson.dumps raises TypeError)."""
    try:
        return [r.code for r in decode_value(value).rejects]
    except (TypeError, RecursionError):
        return ["too_deep"]


async def send(bootstrap, topics, records):
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        max_request_size=12 * 1024 * 1024,
        linger_ms=5,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    try:
        futures = []
        for kind, key, value in records:
            topic = topics.submits if kind is None else topic_of(topics, kind)
            futures.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


class Sampler(threading.Thread):
    """Samples the serve process's RSS and the latency of a status request, until stopped."""

    def __init__(self, serve: Serve, campaign_id: str, workspace_id: str):
        super().__init__(daemon=True)
        self.serve, self.cid, self.ws = serve, campaign_id, workspace_id
        self.rss: list[int] = []
        self.latency: list[float] = []
        self.codes: set[int] = set()
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.rss.append(rss_kib(self.serve.pid))
            t0 = time.monotonic()
            r = self.serve.status(self.cid, self.ws)
            self.latency.append(time.monotonic() - t0)
            self.codes.add(r.status_code)
            self.done.wait(0.1)


def test_malformed_flood_is_dead_lettered_and_contained(bootstrap, topics_factory, procs, tmp_path):
    topics = topics_factory()
    env = projector_env(bootstrap, topics)
    records, valid, n_letters = build_records(seed=61)
    owner = campaign_owner(valid)
    probe = next(c for c in owner if len(c) < 100)
    serve = Serve(procs, env, tmp_path / "p.duckdb", tmp_path)
    serve.wait_listening()
    serve.wait("/readyz 200", lambda: serve.readyz()[0] == 200, 60)
    rss_idle = rss_kib(serve.pid)
    sampler = Sampler(serve, probe, owner[probe])
    sampler.start()
    t0 = time.monotonic()
    try:
        asyncio.run(send(bootstrap, topics, records))
        serve.wait_applied(len(records), 90)
    finally:
        sampler.done.set()
        sampler.join()
    took = time.monotonic() - t0
    assert serve.alive() is None
    deadlettered = serve.metric("projector_deadlettered_total")
    serve.stop()

    db = tmp_path / "p.duckdb"
    assert read_db(db) == dump(fold_dicts(valid))
    with Store(db) as store:
        rows = store.con.execute("SELECT count(*) FROM deadletters").fetchone()[0]
    assert rows == n_letters == deadlettered
    letters = asyncio.run(consume_all(bootstrap, topics.deadletter, n_letters, timeout=60))
    assert len(letters) == n_letters
    positions = {
        (x["source_topic"], x["source_partition"], x["source_offset"], x["item_index"])
        for x in letters
    }
    assert len(positions) == n_letters  # each exactly once
    for x in letters:
        assert x["reason"].split(":")[0] in REASONS, x["reason"]
        assert x["raw_size"] > 0 and len(x.get("raw", x.get("raw_base64", ""))) <= 90_000
    assert sum(x["raw_size"] >= 10 * 1024 * 1024 for x in letters) == 3

    rss_max = max(sampler.rss) / 1024
    assert rss_max < RSS_BOUND_MIB, f"RSS reached {rss_max:.0f} MiB"
    # 404 until the probed campaign's definition is applied, 200 after: never an error.
    assert 200 in sampler.codes and sampler.codes <= {200, 404}, sampler.codes
    worst = max(sampler.latency)
    assert worst < 1.0, f"slowest status answer during the flood: {worst:.2f}s"
    n_bad = sum(1 for k, _, _ in records if k is None)
    median = sorted(sampler.latency)[len(sampler.latency) // 2]
    print(
        f"\n{len(records)} records ({len(valid)} valid events, {n_bad} malformed records "
        f"incl. 3 x 10 MB, "
        f"{n_letters} dead letters incl. bad array items) ingested in {took:.1f}s; "
        f"serve RSS idle {rss_idle / 1024:.0f} MiB, max {rss_max:.0f} MiB; "
        f"{len(sampler.latency)} status requests during the flood, none failed, "
        f"median {median * 1000:.0f} ms, max {worst * 1000:.0f} ms"
    )


pytestmark = pytest.mark.timeout(300)
