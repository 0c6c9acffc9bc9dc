"""Where a flush's time goes: ``Store.flush`` alone, no Kafka, no faust.

Folds the throughput runs' simulator events through ``Store.flush`` in
micro-batches of ``--batch`` events (default 5000, comparable with the older
figures; the live bound is 100,000 while catching up) on a fresh DuckDB file, and reports

* per-flush wall time as the table grows (first and last flushes),
* time per SQL statement kind (the connection is wrapped by a timing proxy;
  the data path is unchanged),
* with ``--cprofile``, the top functions by cumulative and own time.

Events are pydantic models by default (as in the older figures, so a merge
serialises each one). ``--as-consumed`` hands them over as the live consumer
does: decoded by the compiled fast path, canonical JSON included, so the
figure is the writer's own ceiling with nothing else on the machine.

This is a measurement aid for docs/benchmarks.md#profile_store, not one of
the timed benchmarks: ``python -m bench.profile_store --events 100000 [--cprofile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench import common
from projector.settings import Settings
from projector.store.writer import live_store
from schemas import EVENT_ADAPTER


class TimedConnection:
    """Proxy of a DuckDB connection that times ``execute`` by statement kind."""

    def __init__(self, con: Any) -> None:
        self._con = con
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @staticmethod
    def kind(sql: str) -> str:
        s = " ".join(sql.split())
        m = re.match(r"(INSERT OR REPLACE INTO \w+|INSERT OR IGNORE INTO \w+|UPDATE \w+|"
                     r"DELETE FROM \w+|SELECT .*? FROM \w+( SEMI JOIN \w+)?|BEGIN|COMMIT|"
                     r"ROLLBACK|CHECKPOINT)", s)
        if not m:
            return s[:40]
        k = m.group(0)
        if k.startswith("SELECT"):
            k = "SELECT FROM " + k.split(" FROM ", 1)[1]
        return k

    def execute(self, sql: str, *args: Any) -> Any:
        caller = sys._getframe(1).f_locals  # noqa: SLF001
        parts = [] if args else sql.split(";\n")
        if len(parts) > 1:
            # A script (setmerge sends its statements as one): run them one at
            # a time so each is timed under its own kind. Alone on the
            # machine, that costs the same (docs/decisions/0026-merge-as-one-script.md).
            for part in parts:
                result = self._execute(caller, part)
            return result
        return self._execute(caller, sql, *args)

    def _execute(self, caller: dict[str, Any], sql: str, *args: Any) -> Any:
        # DuckDB finds Arrow tables named in SQL among the locals of the frame
        # that calls execute; this proxy is a frame in between. So the call runs
        # in a namespace holding the caller's tables. (Registering them instead
        # fails while an earlier statement's result is unfinished.)
        scope = {n: v for n, v in caller.items() if isinstance(v, pa.Table) and n in sql}
        scope.update(_con=self._con, _call=(sql, *args))
        t0 = time.perf_counter()
        try:
            exec("_result = _con.execute(*_call)", scope)  # noqa: S102 - see above
            return scope["_result"]
        finally:
            k = self.kind(sql)
            self.seconds[k] += time.perf_counter() - t0
            self.calls[k] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--as-consumed", action="store_true",
                    help="events as the consumer hands them (fast path, canonical JSON)")
    args = ap.parse_args()

    events: list[Any] = (
        common.consumed_events(args.events) if args.as_consumed
        else [EVENT_ADAPTER.validate_python(e) for e in common.sim_events(args.events)]
    )
    path = Path(tempfile.mkdtemp(prefix="bench-store-")) / "p.duckdb"
    store = live_store(Settings(), path).open()  # configured as the live writer
    proxy = TimedConnection(store._con)  # noqa: SLF001 - measurement only
    store._con = proxy  # type: ignore[assignment]  # noqa: SLF001
    prof = cProfile.Profile() if args.cprofile else None
    per_flush: list[float] = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    for i in range(0, len(events), args.batch):
        chunk = events[i:i + args.batch]
        f0 = time.perf_counter()
        store.flush(chunk, {("t", 0): i + len(chunk)})
        per_flush.append(time.perf_counter() - f0)
    if prof:
        prof.disable()
    total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    store._con = proxy._con  # noqa: SLF001
    store.close()
    shutil.rmtree(path.parent, ignore_errors=True)

    print(f"{len(events):,} events in {len(per_flush)} flushes of {args.batch}: {total:.2f} s, "
          f"{len(events) / total:,.0f} events/s; {cpu:.2f} s of CPU "
          f"({len(events) / cpu:,.0f} events per CPU-second)")
    print("per-flush seconds, first 5:", [round(x, 3) for x in per_flush[:5]])
    print("per-flush seconds, last 5: ", [round(x, 3) for x in per_flush[-5:]])
    print("\nSQL time by statement kind (share of total flush time):")
    for k, s in sorted(proxy.seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {s:8.2f} s  {s / total:6.1%}  {proxy.calls[k]:6d} calls  {k}")
    if prof:
        for key in ("cumulative", "tottime"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(18)
            print(f"\ncProfile by {key}:")
            print("\n".join(buf.getvalue().splitlines()[6:30]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
