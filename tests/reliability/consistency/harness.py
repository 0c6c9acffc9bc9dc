"""``projector serve``'s composition in one process, polled hard, every answer checked.

The pieces are the real ones and are wired as ``service.serve`` wires them:
a ``Store`` whose flushes run in a one-thread executor, a ``Pipeline`` on an
event loop thread of its own (faust's place; it is framework-free), and the
FastAPI app on uvicorn in another thread, reading through
``ReadStore(store.cursor, heads=store.heads, polled=store.polled)``. Only Kafka
is left out: records are handed to ``Pipeline.add`` as a consumer would, in a
hostile order (shuffled, array records of several events), so a run takes
seconds, not the minute a broker and a group join cost.

What is checked:

* every answer against the database: a flush listener (called under the
  pipeline's flush lock, before the next flush can start) reads each changed
  campaign's runs from DuckDB and records the status and analytics payloads
  at that campaign position. An answer carries its position in its ETag; it
  must equal what the database said at that position.
* every poller's sequence of answers: a campaign once answered never answers
  404 again, once it showed a run it never says ``NO_RUN``, and a run's status
  never moves back in F3's order.
* at the end, every campaign's answers against the pure fold of all events.
"""

from __future__ import annotations

import asyncio
import bisect
import multiprocessing
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from api.app import create_app
from api.keys import KNOWN_SCOPES, KeyRing
from api.limits import Limits
from api.payloads import campaign as views
from api.readstore import ReadStore
from api.server import build_uvicorn_server
from projector.fold.state import State
from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.intake.pipeline import Pipeline
from projector.store.errors import InvariantError
from projector.store.writer import FlushResult, Store
from projector.tools.broker import free_port
from schemas import EVENT_ADAPTER, TOPIC_KIND_OF_TYPE
from tests.reliability.consistency.pollers import KEYS, Findings, poll_main

PARTITIONS = 4


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


def hostile_order(events: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """``events`` shuffled within windows of 10 to 200 events: DLRs before their
    submits, a run's end before its batches, and so on (F2), while campaigns still
    begin all along the stream rather than all in its first records."""
    shuffled: list[dict[str, Any]] = []
    i = 0
    while i < len(events):
        window = events[i : i + rng.randint(10, 200)]
        rng.shuffle(window)
        shuffled.extend(window)
        i += len(window)
    return shuffled


def hostile_records(
    events: list[dict[str, Any]], *, seed: int, array_max: int = 8
) -> list[Record]:
    """``events`` in a hostile order (``hostile_order``), then packed as a producer
    would: per topic and campaign, arrays of 1 to ``array_max`` events (a single
    event as a plain object)."""
    rng = random.Random(seed)
    shuffled = hostile_order(events, rng)
    pending: dict[tuple[str, str], list[dict[str, Any]]] = {}
    want: dict[tuple[str, str], int] = {}
    offsets: Counter[tuple[str, int]] = Counter()
    out: list[Record] = []

    def emit(topic: str, cid: str, batch: list[dict[str, Any]]) -> None:
        partition = zlib.crc32(cid.encode()) % PARTITIONS
        value = orjson.dumps(batch[0] if len(batch) == 1 else batch)
        out.append(Record(topic, partition, offsets[(topic, partition)], cid.encode(), value))
        offsets[(topic, partition)] += 1

    for ev in shuffled:
        slot = (TOPIC_KIND_OF_TYPE[ev["type"]], ev["campaign_id"])
        batch = pending.setdefault(slot, [])
        batch.append(ev)
        if len(batch) >= want.setdefault(slot, rng.randint(1, array_max)):
            emit(*slot, pending.pop(slot))
            del want[slot]
    for slot, batch in pending.items():
        emit(*slot, batch)
    return out


def fold_of(events: Iterable[dict[str, Any]]) -> State:
    state = State()
    state.apply([EVENT_ADAPTER.validate_python(e) for e in events])
    return state


def keys_doc() -> dict[str, Any]:
    return {
        "keys": [
            {"key": k, "workspace_id": ws, "scopes": sorted(KNOWN_SCOPES)}
            for ws, k in KEYS.items()
        ]
    }


class Truth:
    """What DuckDB answered for each campaign position: (campaign, position) -> payloads."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
        self._readers: dict[int, ReadStore] = {}

    def listener(self, store: Store) -> Callable[[FlushResult], None]:
        # A reader of its own: its cursor belongs to the loop thread that calls this.
        reader = ReadStore(store.cursor)

        def record(result: FlushResult) -> None:
            changed = sorted(result.changed_campaigns)
            if not changed:
                return
            with reader.consistent():  # positions and runs of one committed state
                seen = [(key, reader.position(key), reader.runs_of(key)) for key in changed]
            for (workspace_id, cid), position, runs in seen:
                self.at[(cid, position)] = {
                    "status": views.status_payload(cid, views.latest_run(runs)),
                    "analytics": views.analytics_payload(cid, workspace_id, runs),
                }

        return record


class GilHog(threading.Thread):
    """Pure Python spinning for ``duty`` of the time: one more thread wanting the GIL.

    Each time another thread wants the GIL it waits up to the switch interval
    (5 ms in ``serve``), which stretches the writer's steps as a loaded
    machine's scheduler does: that is where a reader slips in between them.
    """

    def __init__(self, stop: threading.Event, duty: float = 1.0) -> None:
        super().__init__(daemon=True, name="gil-hog")
        self.stop, self.duty = stop, duty

    def run(self) -> None:
        spin, rest = 0.002 * self.duty, 0.002 * (1 - self.duty)
        while not self.stop.is_set():
            until = time.perf_counter() + spin
            while time.perf_counter() < until:
                pass
            if rest:
                self.stop.wait(rest)  # load, not a wait for a condition


class LiveServe:
    """One life of the serve composition on ``db``: open, feed, poll, stop; open again."""

    def __init__(
        self,
        db: Path,
        truth: Truth,
        *,
        merge_min_events: int = 0,
        check_invariants: bool = True,
        flush_interval_ms: int = 10,
        port: int | None = None,
    ) -> None:
        self.db = db
        self.truth = truth
        self.merge_min_events = merge_min_events
        self.check_invariants = check_invariants
        self.flush_interval_ms = flush_interval_ms
        self.port = port or free_port()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.store: Store | None = None
        self.pipeline: Pipeline | None = None
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        # What the invariant mode raised; `projector serve` would have exited.
        self.broken: list[InvariantError] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- a life -------------------------------------------------------------------------
    def start(self) -> LiveServe:
        store = Store(
            self.db,
            threads=1,
            merge_min_events=self.merge_min_events,
            check_invariants=self.check_invariants,
        ).open()
        self.store = store
        self.loop = asyncio.new_event_loop()
        loop_thread = threading.Thread(target=self.loop.run_forever, name="consumer", daemon=True)
        loop_thread.start()
        self.new_pipeline()
        status = self.pipeline.status  # type: ignore[union-attr]
        app = create_app(
            ReadStore(store.cursor, heads=store.heads, polled=store.polled),
            keys=KeyRing.from_dict(keys_doc()),
            status=status.snapshot,
            metrics=self.pipeline.metrics,  # type: ignore[union-attr]
            limits=Limits(rate=0, anon_rate=0),
        )
        self._server = build_uvicorn_server(app, "127.0.0.1", self.port)
        api_thread = threading.Thread(target=self._server.run, name="api", daemon=True)
        api_thread.start()
        self._threads = [loop_thread, api_thread]
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not api_thread.is_alive():
                raise AssertionError(f"the API did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def new_pipeline(self) -> None:
        """A consumer (re)starting on the open store: it resumes from DuckDB's offsets."""
        assert self.store is not None
        if self.pipeline is not None:
            self.run(self.pipeline.close())
        status = self.pipeline.status if self.pipeline is not None else PipelineStatus(ready=True)
        metrics = self.pipeline.metrics if self.pipeline is not None else Metrics()
        pipeline = Pipeline(
            self.store,
            executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-writer"),
            deadletters=None,
            status=status,
            metrics=metrics,
            flush_max_events=200,
            flush_interval_ms=self.flush_interval_ms,
        )
        pipeline.prepare({})
        pipeline.listeners.append(self.truth.listener(self.store))
        pipeline.on_invariant_broken = self.broken.append
        self.pipeline = pipeline

    def run(self, coro: Any, timeout: float = 120) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, *, flush: bool = True) -> None:
        """End this life; without ``flush`` what is buffered is dropped, as a kill would."""
        if self._server is not None:
            self._server.should_exit = True
        if self.pipeline is not None:
            if flush and not self.broken:  # a broken invariant stops serve without one
                self.run(self.pipeline.close())
            else:
                self.run(_abandon(self.pipeline))
            self.pipeline.executor.shutdown(wait=True)
            self.pipeline = None
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
        for t in self._threads:
            t.join(10)
        if self.loop is not None:
            self.loop.close()
            self.loop = None
        if self.store is not None:
            self.store.close()
            self.store = None
        self._server = None

    # -- feeding ------------------------------------------------------------------------
    def feed(
        self,
        records: list[Record],
        *,
        rng: random.Random,
        flush_sizes: tuple[int, ...],
        on_record: Callable[[int], None] = lambda i: None,
        until: Callable[[int], bool] = lambda i: False,
    ) -> int:
        """Hand ``records`` to the pipeline in order until ``until(i)``; returns where it stopped.

        Records DuckDB already holds are skipped by the pipeline (redeliveries).
        Every few dozen records the flush bound changes, among ``flush_sizes``,
        so small flushes (Python fold) and large ones (set-based merge) mix.
        """
        assert self.pipeline is not None
        pipeline = self.pipeline

        async def go() -> int:
            for i, r in enumerate(records):
                if self.broken:  # serve stops here (worker.stop_on_broken_invariant)
                    raise self.broken[0]
                if until(i):
                    return i
                if i % 40 == 0:
                    pipeline.flush_max_events = rng.choice(flush_sizes)
                on_record(i)
                await pipeline.add(r.topic, r.partition, r.offset, r.key, r.value)
                if rng.random() < 0.05:
                    await asyncio.sleep(0.001 * rng.random())  # records arrive in bursts
            await pipeline.flush()
            return len(records)

        return int(self.run(go()))


async def _abandon(pipeline: Pipeline) -> None:
    """Stop a pipeline as a SIGKILL would: nothing buffered is flushed."""
    pipeline._closed = True  # noqa: SLF001 - the only way to stop it without its final flush
    # A flush already under way commits (a kill can land after a COMMIT too).
    task = pipeline._flush_task  # noqa: SLF001
    if task is not None and not task.done():
        await asyncio.wait([task])
    async with pipeline._flush_lock:  # noqa: SLF001
        pass
    if pipeline._timer is not None:  # noqa: SLF001
        pipeline._timer.cancel()  # noqa: SLF001


@dataclass
class StressReport:
    records: int
    events: int
    flushes: int
    lives: int
    seconds: float
    findings: Findings
    wrong: list[str]  # answers that differ from the database at their position
    final: list[str]  # answers after the last flush that differ from the fold of all events

    @property
    def problems(self) -> list[str]:
        return [*self.findings.backwards, *self.wrong, *self.final]

    def summary(self) -> str:
        f = self.findings
        return (
            f"{self.events} events in {self.records} records, {self.flushes} flushes, "
            f"{self.lives} lives, {f.answers} answers ({len(f.distinct)} distinct, "
            f"{f.unavailable} refused while restarting) in {self.seconds:.1f}s; "
            f"{len(f.backwards)} backwards, {len(self.wrong)} unlike the database, "
            f"{len(self.final)} unlike the fold at the end"
        )


# How each life after the first begins: the consumer restarts inside the process,
# the process stops cleanly and opens the file again, or it is killed (nothing
# buffered is flushed) and opens the file again.
RESTARTS = ("consumer", "process", "kill")


def stress(
    tmp: Path,
    events: list[dict[str, Any]],
    *,
    seed: int,
    pollers: int = 4,
    hog: float = 1.0,
    lives: int = 3,
    merge_min_events: int = 300,
    flush_sizes: tuple[int, ...] = (1, 4, 16, 64, 400),
    check_invariants: bool = True,
) -> StressReport:
    """Feed ``events`` (hostile order, array records) through ``lives`` lives of the
    serve composition on one file while ``pollers`` poll; report what they saw.

    ``hog``: the share of time a GIL hog spins beside the server (0: none).
    """
    t0 = time.monotonic()
    rng = random.Random(seed)
    records = hostile_records(events, seed=seed)
    ws_of = {e["campaign_id"]: e["workspace_id"] for e in events}
    # Campaigns in the order of their first record, and that record's index.
    first: dict[str, int] = {}
    for i, r in enumerate(records):
        first.setdefault(r.key.decode(), i)
    targets = [(cid, ws_of[cid]) for cid in first]
    born_at = sorted(first.values())
    truth = Truth()
    mp = multiprocessing.get_context("spawn")
    fed, stop, ready, out = mp.Value("i", 0), mp.Event(), mp.Event(), mp.Queue()

    def on_record(i: int) -> None:
        n = bisect.bisect_right(born_at, i)
        if n > fed.value:
            fed.value = n

    serve = LiveServe(
        tmp / "stress.duckdb", truth, merge_min_events=merge_min_events,
        check_invariants=check_invariants,
    ).start()  # fmt: skip
    child = mp.Process(
        target=poll_main,
        args=([serve.url], targets, fed, stop, pollers, seed, ready, out),
        daemon=True,
    )
    child.start()
    if not ready.wait(60):
        raise AssertionError("the pollers' process did not start")
    hog_stop = threading.Event()
    hogs = [GilHog(hog_stop, hog)] if hog else []
    for h in hogs:
        h.start()
    try:
        # Lives of about equal length, each ending at a random record.
        step = len(records) / lives
        ends = [int(step * (k + rng.uniform(0.5, 1))) for k in range(lives - 1)]
        ends.append(len(records))
        for life, end in enumerate(ends):
            serve.feed(
                records, rng=rng, flush_sizes=flush_sizes, on_record=on_record,
                until=lambda i, end=end: i >= end and end < len(records),
            )  # fmt: skip
            if end == len(records):
                break
            how = RESTARTS[life % len(RESTARTS)]
            if how == "consumer":
                serve.new_pipeline()
            else:
                serve.stop(flush=how == "process")
                serve = LiveServe(
                    serve.db, truth, merge_min_events=merge_min_events,
                    check_invariants=check_invariants, port=serve.port,
                ).start()  # fmt: skip
        assert serve.store is not None
        flushes = serve.store.seq
        stop.set()
        findings: Findings = out.get(timeout=60)
        child.join(10)
        hog_stop.set()
        final = final_answers(serve.url, events)
    finally:
        stop.set()
        hog_stop.set()
        if child.is_alive():
            child.kill()
        serve.stop()
    return StressReport(
        records=len(records),
        events=len(events),
        flushes=flushes,
        lives=lives,
        seconds=time.monotonic() - t0,
        findings=findings,
        wrong=answers_unlike(findings, truth),
        final=final,
    )


def answers_unlike(findings: Findings, truth: Truth) -> list[str]:
    """Answers that differ from what the database held at their position."""
    wrong = []
    for kind, cid, position, body in sorted(findings.distinct):
        want = truth.at.get((cid, position), {}).get(kind)
        got = orjson.loads(body)
        if want != got:
            wrong.append(
                f"{kind} of {cid} at position {position}: answered {got}, "
                f"the database held {want}"
            )
    return wrong


def final_answers(url: str, events: list[dict[str, Any]]) -> list[str]:
    """Every campaign's status and analytics that differ from the fold of all ``events``."""
    state = fold_of(events)
    wrong = []
    with httpx.Client(base_url=url, timeout=10) as http:
        for (ws, cid), c in state.campaigns.items():
            runs = state.runs_of((ws, cid))
            want = {
                "status": views.status_payload(cid, views.latest_run(runs)),
                "analytics": views.analytics_payload(cid, c.workspace_id, runs),
            }
            for kind, payload in want.items():
                r = http.get(
                    f"/v1/campaign/{cid}/{kind}", headers={"X-API-Key": KEYS[c.workspace_id]}
                )
                got = r.json()["data"]
                if got != payload:
                    wrong.append(f"{kind} of {cid}: answered {got}, the fold says {payload}")
    return wrong
