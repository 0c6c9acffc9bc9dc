"""Child of ``split_bound``: the projector's writer alone, flushing (c)'s events over and over.

Each cycle opens a fresh store configured as the live writer, hands it the
first ``--events`` simulated events as the consumer would (fast path,
canonical JSON), ``--batch`` at a time, and closes it, so every cycle is (c)'s
writer work from an empty database. The process settles as ``projector
worker`` does (collector policy, 1 ms GIL switch interval). Cycles go on until
``--stop`` exists (checked between flushes) or ``--cycles`` are done; then it
writes every flush's monotonic start and end and its CPU seconds to ``--out``.
``--ready`` is created once the events are decoded and the first cycle ran
(imports, decoding and the first touches of memory are not in any window).

Usage: python -m bench._writer_child --out F [--ready F] [--stop F] [--cycles N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench import common
from projector.intake import runtime
from projector.settings import Settings
from projector.store.writer import live_store
from service.logs import configure_logging


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--cycles", type=int, default=0, help="stop after N cycles (0: until --stop)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready")
    ap.add_argument("--stop")
    args = ap.parse_args()
    if not args.cycles and not args.stop:
        ap.error("give --cycles or --stop")
    events = common.consumed_events(args.events)
    settings = Settings()
    configure_logging(settings.log_level)
    runtime.settle_worker(settings.gil_switch_interval_ms)

    def cycle() -> list[tuple[float, float, float, int]]:
        folder = Path(tempfile.mkdtemp(prefix="bench-writer-"))
        store = live_store(settings, folder / "p.duckdb").open()
        flushes = []
        try:
            for i in range(0, len(events), args.batch):
                chunk = events[i:i + args.batch]
                t0, cpu0 = time.monotonic(), time.process_time()
                store.flush(chunk, {("bench", 0): i + len(chunk)})
                flushes.append((t0, time.monotonic(), time.process_time() - cpu0, len(chunk)))
        finally:
            store.close()
            shutil.rmtree(folder, ignore_errors=True)
        return flushes

    cycle()  # warm-up, not recorded
    if args.ready:
        Path(args.ready).touch()
    flushes: list[tuple[float, float, float, int]] = []
    done = 0
    while not (args.stop and Path(args.stop).exists()):
        flushes += cycle()
        done += 1
        if args.cycles and done >= args.cycles:
            break
    Path(args.out).write_text(json.dumps(
        [{"start": a, "end": b, "cpu_s": c, "events": n} for a, b, c, n in flushes]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
