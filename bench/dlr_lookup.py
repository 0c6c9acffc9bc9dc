"""Small flushes against a big database: does a flush's cost grow with the rows stored?

A delivery report names a ``message_id``; when the recipient holding it is not
in the writer's row cache (always after a restart, a catch-up merge or a cache
overflow) the writer asks DuckDB for it. This measures that path as a
long-running deployment meets it:

1. a fresh database takes the first part of a simulated stream in large
   flushes (its submits: the DLRs that follow have holders in DuckDB);
2. ``recipients``, ``attempts`` and ``messages`` are padded with ``--pad``
   synthetic rows each, of a run no event names (history: a year of
   campaigns);
3. the store is reopened, so its row cache is empty as after a restart, and
   the rest of the stream (DLRs and later submits) is flushed in micro-batches
   of ``--batch`` events, each timed (``Store.flush`` wall time).

One figure set per pad size: flush wall p50 / p99 / max. ``Store.flush`` alone,
on the live writer's configuration (one DuckDB thread); no Kafka.

``python -m bench.dlr_lookup [--pad 0 1000000 5000000] [--events 60000]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import common
from projector.settings import Settings
from projector.store.writer import live_store
from schemas import EVENT_ADAPTER

NAME = "dlr_lookup"
HISTORY_BATCH = 5000


def _pad(con: Any, rows: int) -> None:
    """``rows`` recipients of a run no event names, each with its attempt and report.

    Copies of one stored row of each table, re-keyed. Message ids look like
    the simulator's (``msg_`` and 16 hex digits, in no order), so DuckDB's
    min/max filters cannot skip the padding.
    """
    mid = "'msg_' || md5(i::VARCHAR)[:16]"
    for table, rekey in (
        ("recipients", f"'pad-' || i AS recipient_id, {mid} AS message_id"),
        ("attempts", f"'pad-' || i AS recipient_id, {mid} AS message_id"),
        ("messages", f"{mid} AS message_id"),
    ):
        con.execute(
            f"INSERT INTO {table} SELECT r.* REPLACE ('bench-pad-run' AS run_id, {rekey}) "
            f"FROM (SELECT * FROM {table} WHERE message_id IS NOT NULL LIMIT 1) r, "
            "range(?) t(i)",
            [rows],
        )
    con.execute("CHECKPOINT")


def measure(events: list[Any], pad: int, batch: int, split: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{NAME}-"))
    try:
        path = work / "p.duckdb"
        cut = int(len(events) * split)
        store = live_store(Settings(), path).open()
        for i in range(0, cut, HISTORY_BATCH):
            chunk = events[i:i + HISTORY_BATCH]
            store.flush(chunk, {("t", 0): i + len(chunk)})
        t0 = time.perf_counter()
        _pad(store.con, pad)
        padded_s = time.perf_counter() - t0
        recipients = store.con.execute("SELECT count(*) FROM recipients").fetchone()[0]
        store.close()

        store = live_store(Settings(), path).open()  # an empty row cache, as after a restart
        walls: list[float] = []
        kinds: Counter[str] = Counter(e.type for e in events[cut:])
        for i in range(cut, len(events), batch):
            chunk = events[i:i + batch]
            t0 = time.perf_counter()
            store.flush(chunk, {("t", 0): i + len(chunk)})
            walls.append(time.perf_counter() - t0)
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "pad": pad,
        "recipients_stored": recipients,
        "pad_seconds": round(padded_s, 2),
        "flushes": len(walls),
        "flushed_events": dict(kinds),
        "flush_wall": common.summary_ms(walls),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.dlr_lookup",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--pad", type=int, nargs="+", default=[0, 1_000_000, 5_000_000],
                    help="synthetic rows added to recipients, attempts and messages each "
                         "before the timed flushes (default: 0 1M 5M)")
    ap.add_argument("--events", type=int, default=60_000, help="simulated events (default 60,000)")
    ap.add_argument("--batch", type=int, default=200,
                    help="events per timed flush (default 200: a flush at 2,000 events/s)")
    ap.add_argument("--split", type=float, default=0.6,
                    help="share of the stream flushed before the padding (default 0.6)")
    args = ap.parse_args(argv)

    events = [EVENT_ADAPTER.validate_python(e) for e in common.sim_events(args.events)]
    runs = [measure(events, pad, args.batch, args.split) for pad in args.pad]
    figures = {
        "method": "Store.flush alone (live configuration, one DuckDB thread): history in "
                  f"{HISTORY_BATCH:,}-event flushes, recipients, attempts and messages padded "
                  "with synthetic rows, "
                  f"store reopened (empty row cache), the rest in {args.batch}-event flushes",
        "events": len(events),
        "batch": args.batch,
        "runs": runs,
    }
    path = common.save_result(NAME, figures)
    common.header()
    for r in runs:
        w = r["flush_wall"]
        common.row(NAME, f"flush p50/p99, {r['recipients_stored']:,} stored",
                   f"{w['p50_ms']:.1f} / {w['p99_ms']:.1f} ms")
    print(f"results appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
