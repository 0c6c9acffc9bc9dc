"""Acceptance (scale-out): three ``projector serve`` nodes of one consumer group
answer every request exactly as one node would.

The embedded broker, 8 partitions, a simulated stream in hostile order with
redeliveries, three nodes with their own databases and one ``--group``: they
split the partitions, and from every node every endpoint of every campaign
answers what a single server holding all the events answers (built in process
from the same events), whether the node owns the campaign or proxies to its
owner. Through a non-owner: the owner's ETag, a 304 on it, and a server-sent
stream. Then one node is killed: the other two take its partitions, and every
answer is exact again.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyRing
from api.readstore import ReadStore
from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.settings import Topics
from projector.store.writer import Store
from projector.tools.simulate import generate
from schemas import EVENT_ADAPTER
from schemas.partitioner import partition_of
from tests.fixtures.kafka import produce
from tests.fixtures.processes import Procs, keys_file, projector_env, start_serve
from tests.fixtures.waiting import wait_until
from tests.service.test_tenancy_blackbox import answer, endpoints, first_status_event

PARTITIONS, NODES = 8, 3
CAMPAIGNS, RECIPIENTS, SEED = 10, 30, 28


class Node:
    """One ``projector serve`` of the group, and an HTTP client for it."""

    def __init__(
        self, procs: Procs, env: dict[str, str], tmp: Path, name: str, *, shared: bool = False
    ) -> None:
        # A store per partition: in a data directory of its own, or in one
        # that every node shares (a partition then moves by its file).
        data_dir = tmp / ("shared" if shared else name)
        self.proc, self.port, self.died = start_serve(
            procs, env, tmp / f"{name}.duckdb", tmp / "keys.json", advertise=True,
            data_dir=data_dir,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def cluster(self, key: str) -> dict[str, Any] | None:
        r = self.http.get("/v1/cluster", headers={"X-API-Key": key})
        return r.json()["data"] if r.status_code == 200 else None


def owner_map(nodes: list[Node], key: str, size: int) -> dict[int, str] | None:
    """Partition -> owner when every node shows one settled map over ``size`` owners."""
    maps = []
    for node in nodes:
        view = node.cluster(key)
        if view is None or not view.get("settled"):
            return None
        maps.append({int(p): url for p, url in view["owners"].items()})
    first = maps[0]
    if any(m != first for m in maps) or len(first) != PARTITIONS:
        return None
    return first if len(set(first.values())) == size else None


def reference_client(db: Path, events: list[Any], keys_doc: KeyRing) -> TestClient:
    """A single server's answers for ``events``, in process."""
    store = Store(db).open()
    store.flush(events, {})
    status = PipelineStatus(ready=True, offsets={}, flush_seq=store.seq)
    app = create_app(
        ReadStore(store.cursor), keys=keys_doc, status=status.snapshot, metrics=Metrics()
    )
    return TestClient(app)


def assert_every_answer_exact(
    nodes: list[Node], ref: TestClient, keys: dict[str, str], runs: dict[tuple[str, str], list[str]]
) -> None:
    for node in nodes:
        for (ws, cid), run_ids in runs.items():
            headers = {"X-API-Key": keys[ws]}
            for path, extra in endpoints(cid, run_ids):
                got = node.http.get(path, headers={**headers, **extra})
                want = ref.get(path, headers={**headers, **extra})
                assert answer(got.status_code, got.headers["content-type"], got.content) == answer(
                    want.status_code, want.headers["content-type"], want.content
                ), (node.url, path, got.status_code, got.text[:800], want.text[:800])
        for ws, key in keys.items():
            for query in ("", "?limit=3", "?limit=3&offset=3"):
                got = node.http.get(f"/v1/campaigns{query}", headers={"X-API-Key": key})
                want = ref.get(f"/v1/campaigns{query}", headers={"X-API-Key": key})
                assert answer(got.status_code, got.headers["content-type"], got.content) == answer(
                    want.status_code, want.headers["content-type"], want.content
                ), (node.url, ws, query)


def runs_of(events: list[Any]) -> dict[tuple[str, str], list[str]]:
    """Every campaign's run ids, in first-seen order."""
    runs: dict[tuple[str, str], list[str]] = {}
    for ev in events:
        run_id = getattr(ev, "run_id", None)
        if run_id is not None and run_id not in runs.setdefault(
            (ev.workspace_id, ev.campaign_id), []
        ):
            runs[(ev.workspace_id, ev.campaign_id)].append(run_id)
    return runs


@pytest.mark.timeout(420)
@pytest.mark.parametrize("shared", [False, True], ids=["own-data-dirs", "shared-data-dir"])
def test_every_node_answers_every_request_as_one_node_would(
    bootstrap: str,
    topics_factory: Callable[..., Topics],
    procs: Procs,
    tmp_path: Path,
    shared: bool,
) -> None:
    raw = list(generate(CAMPAIGNS, RECIPIENTS, SEED))
    rng = random.Random(SEED)
    stream = raw + rng.sample(raw, k=len(raw) // 4)  # redeliveries
    rng.shuffle(stream)  # hostile order
    first, second = stream[: len(stream) // 2], stream[len(stream) // 2 :]
    events_first = [EVENT_ADAPTER.validate_python(e) for e in first]
    events_all = [EVENT_ADAPTER.validate_python(e) for e in raw]

    topics = topics_factory(partitions=PARTITIONS)
    keys = keys_file(tmp_path / "keys.json")
    ring = KeyRing.load(tmp_path / "keys.json")
    ref_first = reference_client(tmp_path / "first.duckdb", events_first, ring)
    ref_all = reference_client(tmp_path / "all.duckdb", events_all, ring)
    runs_first, runs_all = runs_of(events_first), runs_of(events_all)
    assert len({partition_of(cid, PARTITIONS) for _, cid in runs_all}) > NODES

    # Pollers and the checks ask far more than a client may: no rate limit here.
    env = projector_env(bootstrap, topics, flush_max_events=200, flush_interval_ms=50, rate_limit=0)
    nodes = [Node(procs, env, tmp_path, f"node{i}", shared=shared) for i in range(NODES)]
    key = next(iter(keys.values()))

    def alive() -> str | None:
        return next((why for n in nodes if (why := n.died()) is not None), None)

    def exact(ref: TestClient, runs: dict[tuple[str, str], list[str]]) -> Callable[[], bool]:
        def check() -> bool:
            try:
                assert_every_answer_exact(nodes, ref, keys, runs)
            except AssertionError:
                return False
            return True

        return check

    try:
        owners = wait_until(
            "three nodes to agree on a settled owner map",
            lambda: owner_map(nodes, key, NODES), 120, alive,
        )  # fmt: skip
        assert set(owners.values()) == {n.url for n in nodes}
        asyncio.run(produce(bootstrap, topics, first, array_size=5))
        wait_until("every node to answer exactly", exact(ref_first, runs_first), 120, alive)
        assert_every_answer_exact(nodes, ref_first, keys, runs_first)  # and say where, if not

        # Through a non-owner: the owner's ETag, then a 304 on it, and a stream.
        (ws, cid), _ = next(iter(runs_first.items()))
        headers = {"X-API-Key": keys[ws]}
        owner = next(n for n in nodes if n.url == owners[partition_of(cid, PARTITIONS)])
        other = next(n for n in nodes if n is not owner)
        path = f"/v1/campaign/{cid}/status"
        direct = owner.http.get(path, headers=headers)
        proxied = other.http.get(path, headers=headers)
        assert proxied.headers["ETag"] == direct.headers["ETag"]
        for name in ("X-Projection-Watermark", "X-Projection-Lag", "Cache-Control"):
            assert proxied.headers.get(name) == direct.headers.get(name), name
        again = other.http.get(path, headers={**headers, "If-None-Match": direct.headers["ETag"]})
        assert again.status_code == 304, again.text
        streamed = first_status_event(other.http, f"/v1/campaign/{cid}/stream", headers)
        assert streamed == direct.json()["data"]

        # Failover mid-stream: one node is killed while the second half flows.
        victim = nodes[0]
        moved = [(w, c) for (w, c) in runs_all if owners[partition_of(c, PARTITIONS)] == victim.url]
        assert moved, "the victim must own a campaign"
        producing = threading.Thread(
            target=lambda: asyncio.run(produce(bootstrap, topics, second, array_size=5))
        )
        producing.start()
        killed_at = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        victim.http.close()
        nodes = nodes[1:]
        producing.join(120)
        w, c = moved[0]
        moved_path, moved_headers = f"/v1/campaign/{c}/status", {"X-API-Key": keys[w]}
        want = ref_all.get(moved_path, headers=moved_headers).json()["data"]
        wait_until(
            "a moved campaign's exact status",
            lambda: (r := nodes[0].http.get(moved_path, headers=moved_headers)).status_code == 200
            and r.json()["data"] == want,
            180, alive,
        )  # fmt: skip
        first_exact = time.monotonic() - killed_at
        wait_until(
            "the two nodes left to own every partition",
            lambda: owner_map(nodes, key, NODES - 1), 60, alive,
        )  # fmt: skip
        wait_until("every answer exact after the failover", exact(ref_all, runs_all), 180, alive)
        assert_every_answer_exact(nodes, ref_all, keys, runs_all)
        print(f"failover ({'shared' if shared else 'own'} data dirs): {len(moved)} campaigns "
              "moved; first exact answer for one "
              f"{first_exact:.1f} s after the kill")  # fmt: skip
    finally:
        for node in nodes:
            node.http.close()


class Poller(threading.Thread):
    """Polls every campaign's status on one node until stopped; keeps every status code.

    ``shown`` is shared by all pollers, as by one client that moves between
    nodes: once any answer showed a campaign's run, a later 404 (no run) is
    wrong, on whichever node it comes from (a partition's new owner must not
    answer before it has caught up with its last owner).
    """

    def __init__(
        self, node: Node, campaigns: list[tuple[str, str]], keys: dict[str, str], shown: set[str]
    ):
        super().__init__(daemon=True)
        self.node, self.campaigns, self.keys, self.shown = node, campaigns, keys, shown
        self.stop = threading.Event()
        self.codes: dict[int, int] = {}
        self.wrong: list[str] = []  # answers that are neither 200 nor a 503 with Retry-After

    def run(self) -> None:
        with httpx.Client(base_url=self.node.url, timeout=10) as http:
            while not self.stop.is_set():
                for ws, cid in self.campaigns:
                    r = http.get(f"/v1/campaign/{cid}/status", headers={"X-API-Key": self.keys[ws]})
                    self.codes[r.status_code] = self.codes.get(r.status_code, 0) + 1
                    if r.status_code == 503 and "Retry-After" in r.headers:
                        continue
                    if r.status_code == 200:
                        self.shown.add(cid)
                    elif r.status_code != 404 or cid in self.shown:  # 404: no run applied yet
                        self.wrong.append(f"{cid}: {r.status_code} {r.text[:200]}")

    def halt(self) -> None:
        self.stop.set()
        self.join(30)


@pytest.mark.timeout(420)
def test_scaling_one_to_three_to_one_while_events_flow(
    bootstrap: str, topics_factory: Callable[..., Topics], procs: Procs, tmp_path: Path
) -> None:
    raw = list(generate(CAMPAIGNS, RECIPIENTS, SEED + 1))
    rng = random.Random(SEED + 1)
    stream = raw + rng.sample(raw, k=len(raw) // 4)
    rng.shuffle(stream)
    chunks = [stream[i::6] for i in range(6)]
    events = [EVENT_ADAPTER.validate_python(e) for e in raw]

    topics = topics_factory(partitions=PARTITIONS)
    keys = keys_file(tmp_path / "keys.json")
    ref = reference_client(tmp_path / "all.duckdb", events, KeyRing.load(tmp_path / "keys.json"))
    runs = runs_of(events)
    campaigns = sorted(runs)
    key = next(iter(keys.values()))
    # Pollers and the checks ask far more than a client may: no rate limit here.
    env = projector_env(bootstrap, topics, flush_max_events=200, flush_interval_ms=50, rate_limit=0)
    nodes = [Node(procs, env, tmp_path, "node0")]
    pollers: list[Poller] = []
    shown: set[str] = set()

    def alive() -> str | None:
        return next((why for n in nodes if (why := n.died()) is not None), None)

    def poll(node: Node) -> None:
        pollers.append(Poller(node, campaigns, keys, shown))
        pollers[-1].start()

    def produce_chunks(which: list[int]) -> None:
        for i in which:
            asyncio.run(produce(bootstrap, topics, chunks[i], array_size=5))

    try:
        wait_until("one node to own everything", lambda: owner_map(nodes, key, 1), 120, alive)
        poll(nodes[0])
        produce_chunks([0, 1])

        # 1 -> 3 while the next chunks flow.
        producing = threading.Thread(target=produce_chunks, args=([2, 3],))
        producing.start()
        nodes += [Node(procs, env, tmp_path, f"node{i}") for i in (1, 2)]
        wait_until("three nodes to share the partitions", lambda: owner_map(nodes, key, 3),
                   120, alive)  # fmt: skip
        for node in nodes[1:]:
            poll(node)
        producing.join(120)

        # 3 -> 1 while the rest flows: each leaving node's poller stops first.
        producing = threading.Thread(target=produce_chunks, args=([4, 5],))
        producing.start()
        for node in nodes[1:]:
            for poller in [p for p in pollers if p.node is node]:
                poller.halt()
            node.proc.send_signal(signal.SIGTERM)
            node.proc.wait(60)
            node.http.close()
        nodes = nodes[:1]
        wait_until("one node to own everything again", lambda: owner_map(nodes, key, 1),
                   120, alive)  # fmt: skip
        producing.join(120)

        def exact() -> bool:
            try:
                assert_every_answer_exact(nodes, ref, keys, runs)
            except AssertionError as e:
                last_error[0] = str(e)[:3000]
                return False
            return True

        last_error = [""]
        try:
            wait_until("every answer exact after scaling back", exact, 180, alive)
        except BaseException:
            print("the last difference:", last_error[0])
            raise
        assert_every_answer_exact(nodes, ref, keys, runs)
        for poller in pollers:
            poller.halt()
        codes: dict[int, int] = {}
        for poller in pollers:
            assert not poller.wrong, poller.wrong[:5]
            for code, n in poller.codes.items():
                codes[code] = codes.get(code, 0) + n
        assert codes.get(200, 0) > 0, codes
        print(f"scaling 1 -> 3 -> 1: polls by status {codes}")
    finally:
        for poller in pollers:
            poller.stop.set()
        for node in nodes:
            node.http.close()
