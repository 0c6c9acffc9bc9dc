"""Child process of ``projector_single`` / ``projector_array``: the real projector, timed.

It builds the projector exactly as ``projector worker --until-caught-up``
does (``Projector(settings, store, exit_when_caught_up=True)``, settings from
``PROJECTOR_*``, ``prepare()``, ``runtime.settle_worker(...)``, ``run_worker``) and adds
two observers that do not change the data path:

* the first call of ``Pipeline.add`` records the time the first record
  arrived (the hook removes itself, so later records pay nothing);
* a flush listener (``Pipeline.listeners``) records every committed flush
  and the moment the stored offsets reach the log ends given in ``--target``.

The measured window is first record -> the commit that made DuckDB caught up;
group join and startup are outside it (reported separately). The worker's own
exit-when-caught-up check polls once a second, which is why it is not used as
the end mark.

With ``--freshness``, the same worker also records, for every record it
commits, the commit time minus the record's Kafka timestamp (the producer's
send time): the values ``projector_event_freshness_seconds`` observes,
captured one by one instead of in buckets. The target file may then appear
later (the parent writes it once its paced producer stops).

Usage: python -m bench._projector_child --target ends.json --out result.json [--freshness]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import threading
import time
from pathlib import Path
from typing import Any

from projector.fold.prior import Changes
from projector.intake import runtime
from projector.intake.worker import Projector, run_worker
from projector.settings import Settings
from projector.store.shards import live_shards
from projector.store.writer import FlushResult, live_store
from service.logs import configure_logging


class _Recorder:
    """Stands in for the freshness histogram: keeps (commit wall time, seconds) per record."""

    def __init__(self) -> None:
        self.values: list[tuple[float, float]] = []

    def observe(self, seconds: float) -> None:
        self.values.append((time.time(), seconds))


class _Forward:
    """A histogram that also hands every observation to a recorder."""

    def __init__(self, histogram: Any, recorder: _Recorder) -> None:
        self.histogram = histogram
        self.recorder = recorder
        self._sum = histogram._sum  # noqa: SLF001 - read at the end, as for the real one

    def observe(self, seconds: float) -> None:
        self.histogram.observe(seconds)
        self.recorder.observe(seconds)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True, help="JSON [[topic, partition, end], ...]")
    ap.add_argument("--out", required=True)
    ap.add_argument("--freshness", action="store_true",
                    help="record per-record freshness; --target may appear later")
    args = ap.parse_args()
    began = time.monotonic()
    settings = Settings()
    configure_logging(settings.log_level)
    target_path = Path(args.target)
    target: dict[tuple[str, int], int] | None = None
    fresh = _Recorder()
    # A store per partition when PROJECTOR_DATA_DIR is set (bench.shard_live).
    store = live_shards(settings).open() if settings.data_dir else live_store(settings).open()
    marks: dict[str, Any] = {"first": None, "cpu0": None, "caught_up": None, "cpu1": None,
                             "flushes": 0, "events": 0, "first_flush": None, "flush_wall": []}
    try:
        # In freshness mode the log is empty at start, so "caught up with the
        # ends seen at start" would hold at once: this child stops itself instead.
        projector = Projector(settings, store, exit_when_caught_up=not args.freshness)
        projector.prepare()
        pipeline = projector.pipeline
        if args.freshness:
            projector.metrics.freshness = fresh  # type: ignore[assignment]
        real_add = pipeline.add
        arrivals = _Recorder()  # freshness mode: how late records reach Pipeline.add

        async def first_add(*a: Any, **kw: Any) -> None:
            marks["first"] = time.monotonic()
            marks["cpu0"] = time.process_time()
            if args.freshness:
                pipeline.add = timed_add  # type: ignore[method-assign]
                await timed_add(*a, **kw)
                return
            del pipeline.add  # back to the class method: no cost on later records
            await real_add(*a, **kw)

        async def timed_add(*a: Any, **kw: Any) -> None:
            # The agent passes the record's Kafka timestamp (seconds) last.
            if len(a) == 7 and a[6] is not None:
                arrivals.observe(time.time() - a[6])
            await real_add(*a, **kw)

        pipeline.add = first_add  # type: ignore[method-assign]
        flush_walls = _Recorder()
        projector.metrics.flush_seconds = _Forward(  # type: ignore[assignment]
            projector.metrics.flush_seconds, flush_walls)
        timeline: list[list[float]] = []  # per flush: committed at (s after first record), events

        def on_flush(result: FlushResult) -> None:
            nonlocal target
            now = time.monotonic()
            if marks["first_flush"] is None:
                marks["first_flush"] = now
                marks["first_flush_wall"] = time.time()
                if args.freshness:  # tells the parent the group has joined
                    target_path.with_name("first_flush").touch()
            if target is None and target_path.exists():
                target = {(t, p): o for t, p, o in json.loads(target_path.read_text())}
            if marks["caught_up"] is None:
                timeline.append([round(now - marks["first"], 3), result.events])
                marks["flushes"] += 1
                marks["events"] += result.events
                if target is not None and all(
                    pipeline.applied.get(tp, 0) >= end for tp, end in target.items()
                ):
                    marks["caught_up"] = now
                    marks["cpu1"] = time.process_time()
                    if args.freshness:
                        os.kill(os.getpid(), signal.SIGTERM)  # faust stops cleanly

        pipeline.listeners.append(on_flush)
        if args.freshness:
            # The projector may have applied everything before the target file
            # appears, and then no flush comes to notice it: check on a timer.
            def watch_target() -> None:
                while marks["caught_up"] is None:
                    time.sleep(0.05)
                    if target_path.exists() and marks["first_flush"] is not None:
                        projector.loop.call_soon_threadsafe(
                            on_flush, FlushResult(0, 0, 0, frozenset(), Changes()))

            threading.Thread(target=watch_target, daemon=True).start()
        # As `projector worker` does before its stream.
        runtime.settle_worker(settings.gil_switch_interval_ms)
        code = run_worker(projector.app)
        m = projector.metrics
        flush_sum = m.flush_seconds._sum.get()  # noqa: SLF001 - read-only peek at the histogram
    finally:
        store.close()
    out = {
        "exit_code": code,
        "events": marks["events"],
        "flushes": marks["flushes"],
        "startup_s": (marks["first"] or began) - began,
        "elapsed_s": (marks["caught_up"] - marks["first"]) if marks["caught_up"] else None,
        # The window's ends on the system-wide monotonic clock: bench.catchup_scale
        # adds the windows of nodes running side by side.
        "first_monotonic": marks["first"],
        "caught_up_monotonic": marks["caught_up"],
        "cpu_s": (marks["cpu1"] - marks["cpu0"]) if marks["cpu1"] else None,
        "first_flush_after_first_record_s": (marks["first_flush"] - marks["first"])
        if marks["first_flush"] and marks["first"] else None,
        "flush_seconds_total": flush_sum,
        "first_flush_wall": marks.get("first_flush_wall"),
        "freshness": fresh.values if args.freshness else None,
        # (wall time, seconds): lateness of each record at Pipeline.add, and
        # each flush's wall time (Store.flush in the writer thread).
        "arrivals": arrivals.values if args.freshness else None,
        "flush_walls": flush_walls.values if args.freshness else None,
        # Until caught up: [committed at (s after the first record), events, wall s].
        "timeline": [[*t, round(w, 3)] for t, (_, w) in zip(timeline, flush_walls.values)],
        "settings": {"flush_max_events": settings.flush_max_events,
                     "flush_interval_ms": settings.flush_interval_ms},
        # Peak resident memory of the whole run (Linux reports KiB): what
        # the flush size bound costs while catching up on a backlog.
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    with open(args.out, "w") as f:
        json.dump(out, f)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
