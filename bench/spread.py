"""Spread of a benchmark figure over its recorded runs.

One run of a latency tail says little on a shared 2-core machine (the status
p99 moves by more than its target between identical runs). Every run appends to
``bench/results/<name>.json``; this prints min / median / max of chosen
figures over the runs since a date, and how many met a bound::

    python -m bench.spread status_latency gentle.client_latency.p99_ms \
        paced.client_latency.p99_ms closed_loop.requests_per_s --since 2026-11-30T17:00 --below 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from bench import common


def figure(run: dict[str, Any], path: str) -> float | None:
    """``a.b.c`` of one run's figures, or None where a run lacks it."""
    value: Any = run
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.spread", description=__doc__.split("\n")[0])
    ap.add_argument("name", help="benchmark (bench/results/<name>.json)")
    ap.add_argument("paths", nargs="+",
                    help="dotted figure paths, e.g. gentle.client_latency.p99_ms")
    ap.add_argument("--since", default="", help="ISO date-time: runs on or after it (default: all)")
    ap.add_argument("--below", type=float, default=None, help="also count runs below this value")
    args = ap.parse_args(argv)
    path = common.RESULTS / f"{args.name}.json"
    if not path.exists():
        print(f"no results for {args.name!r} ({path})", file=sys.stderr)
        return 2
    runs = [r for r in json.loads(path.read_text())
            if r.get("machine", {}).get("date", "") >= args.since]
    print(f"{args.name}: {len(runs)} runs since {args.since or 'the first'}")
    for p in args.paths:
        values = [v for r in runs if (v := figure(r, p)) is not None]
        if not values:
            print(f"  {p}: no values")
            continue
        line = (f"  {p}: n={len(values)} min {min(values):,.2f} "
                f"median {statistics.median(values):,.2f} max {max(values):,.2f}")
        if args.below is not None:
            line += f"; {sum(v < args.below for v in values)} below {args.below:g}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
