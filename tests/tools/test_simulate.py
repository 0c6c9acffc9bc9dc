"""The simulator: deterministic, valid against the contract, realistically shaped."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from projector.settings import Settings, Topics
from projector.tools.simulate import (
    DELAY_MAX_MS,
    ERROR_CODES,
    FAIL_REASONS,
    SKIP_REASONS,
    LiveClock,
    generate,
    generate_timed,
    released,
)
from schemas import EVENT_ADAPTER
from service.commands.simulate import run as run_cli

TERMINAL_DLR = {"delivered", "undelivered", "expired", "rejected", "failed"}


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    # 30 campaigns (~60 runs) with seed 5 include cancelled and failed runs,
    # failed batches and renamed campaigns; 1,500 recipients per run means
    # two batches each, the second partial.
    return list(generate(30, 1_500, seed=5))


def test_same_seed_same_stream() -> None:
    assert list(generate(4, 120, seed=3)) == list(generate(4, 120, seed=3))


def test_different_seed_different_stream() -> None:
    a, b = list(generate(4, 120, seed=3)), list(generate(4, 120, seed=4))
    assert a != b
    assert not {e["event_id"] for e in a} & {e["event_id"] for e in b}
    assert not {e["run_id"] for e in a if "run_id" in e} & {e["run_id"] for e in b if "run_id" in e}


def test_every_event_validates_on_the_wire(stream: list[dict[str, Any]]) -> None:
    for event in stream:
        EVENT_ADAPTER.validate_json(orjson.dumps(event))


def test_ordered_by_occurred_at_and_ids_unique(stream: list[dict[str, Any]]) -> None:
    stamps = [e["occurred_at"] for e in stream]
    assert stamps == sorted(stamps)
    assert all(re.fullmatch(r"2026-05-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", s) for s in stamps)
    assert len({e["event_id"] for e in stream}) == len(stream)
    sent = [
        e["message_id"] for e in stream if e["type"] == "message.submitted" and "message_id" in e
    ]
    assert len(set(sent)) == len(sent)


def test_interleaves_campaigns(stream: list[dict[str, Any]]) -> None:
    switches = sum(a["campaign_id"] != b["campaign_id"] for a, b in itertools.pairwise(stream))
    assert switches > 1_000
    assert {e["workspace_id"] for e in stream} == {"ws_alpha", "ws_beta", "ws_gamma"}


def test_runs_and_batches_are_shaped_like_the_engine(stream: list[dict[str, Any]]) -> None:
    by_type = defaultdict(list)
    for e in stream:
        by_type[e["type"]].append(e)
    scheduled = {e["run_id"]: e for e in by_type["run.scheduled"]}
    runs_per_campaign = Counter(e["campaign_id"] for e in scheduled.values())
    assert set(runs_per_campaign.values()) <= {1, 2, 3}
    assert len(runs_per_campaign) == 30
    assert all(
        e["recipient_count"] == 1_500 and e["total_batches"] == 2 for e in scheduled.values()
    )

    # Every run ends exactly once, and some end early.
    ends = Counter(
        e["type"] for t in ("run.completed", "run.failed", "run.cancelled") for e in by_type[t]
    )
    assert sum(ends.values()) == len(scheduled)
    assert ends["run.cancelled"] >= 1 and ends["run.failed"] >= 1
    assert all(set(e["error"]) == {"code", "message"} for e in by_type["run.failed"])
    assert any("(renamed)" in e["name"] for e in by_type["campaign.defined"])

    claimed = {e["run_id"]: e["occurred_at"] for e in by_type["run.claimed"]}
    assert set(claimed) == set(scheduled)
    assert all(claimed[r] >= scheduled[r]["scheduled_at"] for r in claimed)

    phone = re.compile(r"2557\d{8}")
    for b in by_type["batch.created"]:
        assert 1 <= len(b["recipients"]) <= 1_000
        assert all(phone.fullmatch(r["phone_number"]) for r in b["recipients"])
    assert {b["batch_sequence"] for b in by_type["batch.created"]} == {1, 2}
    assert by_type["batch.failed"]
    assert all(
        e["error_detail"] == {"code": "PROVIDER_DOWN", "message": "provider unavailable"}
        for e in by_type["batch.failed"]
    )


def test_submits_and_reports_have_realistic_shares(stream: list[dict[str, Any]]) -> None:
    max_attempts = {e["run_id"]: e["max_attempts"] for e in stream if e["type"] == "run.scheduled"}
    submits = [e for e in stream if e["type"] == "message.submitted"]
    assert all(1 <= s["attempt"] <= max_attempts[s["run_id"]] for s in submits)
    assert max(s["attempt"] for s in submits) == 3
    # Retries follow failures: an attempt n > 1 has a failed attempt n - 1 before it.
    failed_attempts = {
        (s["recipient_id"], s["attempt"]) for s in submits if s["outcome"] == "failed"
    }
    assert all(
        (s["recipient_id"], s["attempt"] - 1) in failed_attempts
        for s in submits
        if s["attempt"] > 1
    )

    final: dict[str, dict[str, Any]] = {}
    for s in submits:
        if s["recipient_id"] not in final or s["attempt"] > final[s["recipient_id"]]["attempt"]:
            final[s["recipient_id"]] = s
    outcomes = Counter(s["outcome"] for s in final.values())
    total = sum(outcomes.values())
    assert 0.90 < outcomes["sent"] / total < 0.96
    assert 0.01 < outcomes["failed"] / total < 0.07
    assert 0.015 < outcomes["skipped"] / total < 0.045

    dlrs = defaultdict(list)
    for e in stream:
        if e["type"] == "message.dlr":
            dlrs[e["message_id"]].append(e)
    sent_ids = [s["message_id"] for s in submits if s["outcome"] == "sent"]
    assert set(dlrs) <= set(sent_ids)
    # Receipts that never come: no report at all, or only an early one.
    no_report = sum(m not in dlrs for m in sent_ids) / len(sent_ids)
    assert 0.01 < no_report < 0.03
    no_final = sum(
        not any(r["status"] in TERMINAL_DLR for r in dlrs.get(m, ())) for m in sent_ids
    ) / len(sent_ids)
    assert 0.02 < no_final < 0.04
    finals = Counter(r["status"] for rs in dlrs.values() for r in rs if r["status"] in TERMINAL_DLR)
    assert 0.86 < finals["delivered"] / sum(finals.values()) < 0.94
    assert finals["undelivered"] and finals["expired"] and finals["rejected"] and finals["failed"]
    # An early non-terminal report, when there is one, comes before the final one.
    for reports in dlrs.values():
        assert all(r["status"] in {"accepted", "buffered"} for r in reports[:-1])
    assert any(len(r) == 2 for r in dlrs.values())


def test_reasons_and_error_codes_are_a_gateways(stream: list[dict[str, Any]]) -> None:
    submits = [e for e in stream if e["type"] == "message.submitted"]
    reasons = {o: Counter(s["reason"] for s in submits if s["outcome"] == o)
               for o in ("failed", "skipped")}
    assert set(reasons["skipped"]) == {r for r, _w in SKIP_REASONS}
    assert set(reasons["failed"]) == {r for r, _w in FAIL_REASONS}
    assert reasons["skipped"].most_common(1)[0][0] == "invalid_number"
    assert all("reason" not in s for s in submits if s["outcome"] == "sent")
    codes: dict[str, Counter[str | None]] = defaultdict(Counter)
    for e in stream:
        if e["type"] == "message.dlr":
            codes[e["status"]][e.get("error_code")] += 1
    for status, known in ERROR_CODES.items():
        assert set(codes[status]) == {c for c, _w in known}, status
    assert set(codes["expired"]) == set(codes["delivered"]) == {None}
    assert all(re.fullmatch(r"\d{3}", c) for k in ERROR_CODES for c in codes[k])


def test_delivery_delays_have_a_long_tail(stream: list[dict[str, Any]]) -> None:
    def ms(stamp: str) -> int:
        return int(datetime.fromisoformat(stamp).timestamp() * 1000)

    sent_at = {e["message_id"]: ms(e["occurred_at"]) for e in stream
               if e["type"] == "message.submitted" and e["outcome"] == "sent"}
    delays = sorted(ms(e["occurred_at"]) - sent_at[e["message_id"]] for e in stream
                    if e["type"] == "message.dlr" and e["status"] == "delivered")
    n = len(delays)
    assert delays[0] >= 0 and delays[-1] <= DELAY_MAX_MS
    assert 1_000 < delays[n // 2] < 10_000  # most in seconds
    assert 0.05 < sum(d >= 60_000 for d in delays) / n < 0.15  # some minutes
    assert 0 < sum(d >= 3_600_000 for d in delays) / n < 0.01  # rarely hours


def test_cancelled_runs_stop_submitting(stream: list[dict[str, Any]]) -> None:
    ended_early = {
        e["run_id"]: e["occurred_at"]
        for e in stream
        if e["type"] in ("run.cancelled", "run.failed")
    }
    for e in stream:
        if e["type"] in ("message.submitted", "batch.created", "batch.started"):
            if e["run_id"] in ended_early:
                assert e["occurred_at"] <= ended_early[e["run_id"]]


def test_small_runs_list_recipients_in_the_snapshot() -> None:
    events = list(generate(2, 30, seed=1))
    for snap in (e for e in events if e["type"] == "run.snapshot_frozen"):
        named = [
            r["phone_number"]
            for b in events
            if b["type"] == "batch.created" and b["run_id"] == snap["run_id"]
            for r in b["recipients"]
        ]
        assert snap["recipients"][: len(named)] == named
        assert snap["cost"]["currency_units"] == "sms_parts"


def test_lazy_for_huge_runs() -> None:
    # A million recipients per run: the first events come without generating the rest.
    head = list(itertools.islice(generate(3, 1_000_000, seed=2), 5_000))
    assert len(head) == 5_000
    assert any(e["type"] == "message.submitted" for e in head)


def test_cli_writes_sorted_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim.jsonl"
    args = argparse.Namespace(
        campaigns=2, recipients=50, rate=0.0, seed=9, out=str(out), array_size=1
    )
    assert run_cli(args, Settings()) == 0
    lines = out.read_bytes().splitlines()
    expected = list(generate(2, 50, seed=9))
    assert [orjson.loads(line) for line in lines] == expected
    assert lines[0] == orjson.dumps(expected[0], option=orjson.OPT_SORT_KEYS)
    assert f"{len(expected)} events" in capsys.readouterr().err.replace(",", "")


def _read_back(bootstrap: str, topics: Topics, expected: int) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            *topics.sources,
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        got: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < expected and time.monotonic() < deadline:
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    for m in messages:
                        value = orjson.loads(m.value)
                        got.extend(value if isinstance(value, list) else [value])
        finally:
            await consumer.stop()
        return got

    return asyncio.run(read())


def test_cli_produces_the_stream_paced(
    bootstrap: str, topics_factory: Callable[..., Topics], capsys: pytest.CaptureFixture[str]
) -> None:
    topics = topics_factory(partitions=4)
    expected = list(generate(2, 60, seed=4))
    rate = 1_000.0
    args = argparse.Namespace(
        campaigns=2, recipients=60, rate=rate, seed=4, out=None, array_size=20
    )
    started = time.monotonic()
    assert run_cli(args, Settings(bootstrap=bootstrap, topics=topics, partitions=4)) == 0
    elapsed = time.monotonic() - started

    # The token bucket allows a 50 ms burst, no more.
    assert elapsed >= (len(expected) / rate - 0.05) * 0.95
    assert f"produced to {bootstrap}" in capsys.readouterr().err
    got = _read_back(bootstrap, topics, len(expected))
    key = lambda e: e["event_id"]  # noqa: E731
    assert sorted(got, key=key) == sorted(expected, key=key)


# -- live mode ---------------------------------------------------------------------


class FakeClock:
    """A wall clock in ms that only moves when the stream sleeps (or a test says so)."""

    def __init__(self, start: int) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> int:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += round(seconds * 1000)


def _play(timed: list[tuple[int, dict[str, Any]]], clock: LiveClock, fake: FakeClock,
          size: int = 10, lag_ms: int = 0) -> list[dict[str, Any]]:
    """Stamp the chunks as a demo sends them, ``lag_ms`` of pacing after each chunk."""
    async def go() -> list[dict[str, Any]]:
        out = []
        async for chunk in released(timed, size, clock, fake.sleep):
            out += [clock.stamp(ms, e) for ms, e in chunk]
            fake.now += lag_ms
        return out

    return asyncio.run(go())


def test_live_mode_plays_the_same_events_stamped_on_the_wall_clock() -> None:
    timed = list(generate_timed(2, 200, seed=3))
    start = 1_900_000_000_000  # far from the simulated 2026-05-12
    fake = FakeClock(start)
    live = _play(timed, LiveClock(max_idle_ms=5_000, now_ms=fake), fake)
    # The same events in the same order; only the stamps moved.
    assert [e["event_id"] for e in live] == [e["event_id"] for _ms, e in timed]
    assert all({k: v for k, v in a.items() if k not in ("occurred_at", "frozen_at",
                                                         "scheduled_at")}
               == {k: v for k, v in b.items() if k not in ("occurred_at", "frozen_at",
                                                           "scheduled_at")}
               for a, (_ms, b) in zip(live, timed, strict=True))
    stamps = [e["occurred_at"] for e in live]
    assert stamps == sorted(stamps)
    assert stamps[0] == _fmt(start) and stamps[-1] == _fmt(fake.now)  # never ahead of the clock
    # Simulated spacing is kept up to 5 s; longer quiet stretches are cut to 5 s.
    sim = [ms for ms, _e in timed]
    wall = [_ms(s) for s in stamps]
    for (s0, s1), (w0, w1) in zip(itertools.pairwise(sim), itertools.pairwise(wall),
                                  strict=True):
        assert w1 - w0 == min(s1 - s0, 5_000)
    assert max(fake.slept) <= 5.0
    assert wall[-1] - wall[0] < sim[-1] - sim[0]
    for e in live:
        if e["type"] == "run.snapshot_frozen":
            assert e["frozen_at"] == e["occurred_at"]
        if e["type"] == "run.scheduled":
            assert e["scheduled_at"] >= e["occurred_at"]
    # Deterministic given the clock: the same seed and clock give the same live stream.
    again = FakeClock(start)
    assert _play(timed, LiveClock(max_idle_ms=5_000, now_ms=again), again) == live


def test_live_mode_stamps_late_when_pacing_holds_events_back() -> None:
    timed = list(generate_timed(1, 100, seed=2))
    fake = FakeClock(1_900_000_000_000)
    live = _play(timed, LiveClock(now_ms=fake), fake, size=5, lag_ms=200)
    wall = [_ms(e["occurred_at"]) for e in live]
    assert wall == sorted(wall) and wall[-1] <= fake.now
    # Each stamp is the clock when its chunk was sent, never the earlier time it was due.
    assert len(set(wall)) >= len(wall) // 5


def test_live_stamps_are_near_the_real_wall_clock() -> None:
    timed = list(itertools.islice(generate_timed(1, 50, seed=1), 40))
    clock = LiveClock()
    before = time.time()
    stamped = [clock.stamp(ms, e) for ms, e in timed]
    after = time.time()
    for e in stamped:
        t = datetime.fromisoformat(e["occurred_at"]).timestamp()
        assert before - 0.001 <= t <= after + 0.001
        EVENT_ADAPTER.validate_json(orjson.dumps(e))


def _ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).timestamp() * 1000)


def _fmt(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
