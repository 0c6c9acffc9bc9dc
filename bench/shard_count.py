"""Issue 29: how the cost of one node grows with its partition count at a fixed event rate.

One node, a store per partition (``--data-dir``), topics of 4, 16 and 64
partitions, the simulator's mix at 2,000 events/s (``bench.freshness``: a
paced producer, a ``projector worker`` child, freshness per record). Per
partition count: the node's CPU (seconds per second of wall time, from its
first record to its last: the share of a core the same load costs), CPU per
1,000 events, freshness p50/p99, flush wall p50/p99, peak RSS, start-up.
The counts run in turn, the order reversed each round (the VM's speed
drifts by tens of percent within an hour). With ``--one-file``, today's one
file at the first count runs beside them as the reference. Appends to
``bench/results/shard_count.json``.

Usage: python -m bench.shard_count [--partitions 4 16 64] [--rounds 2] [--duration 30]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from bench import common, freshness

NAME = "shard_count"


def _figures(layout: str, partitions: int, fresh: dict[str, Any]) -> dict[str, Any]:
    node, f, flush = fresh["projector"], fresh["freshness"], fresh.get("flush_wall", {})
    return {
        "layout": layout,
        "partitions": partitions,
        "events": node["events"],
        "cores_busy": round(node["cores_busy"], 3) if node["cores_busy"] else None,
        "cpu_ms_per_1000_events": round(1e6 * node["cpu_s"] / node["events"], 1)
        if node["cpu_s"] and node["events"] else None,
        "freshness_p50_ms": f.get("p50_ms"),
        "freshness_p99_ms": f.get("p99_ms"),
        "flush_wall_p50_ms": flush.get("p50_ms"),
        "flush_wall_p99_ms": flush.get("p99_ms"),
        "max_rss_mb": round(node["max_rss_mb"]),
        "startup_s": round(node["startup_s"], 2),
        "all_committed": fresh["records_committed"] == fresh["records_sent"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partitions", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=30.0, help="measured seconds per run")
    ap.add_argument("--one-file", action="store_true",
                    help="also run one file at the first partition count (the reference)")
    args = ap.parse_args(argv)
    if any(n < 1 for n in args.partitions):
        ap.error("--partitions must be positive")
    variants = [("shards", n) for n in args.partitions]
    if args.one_file:
        variants.insert(0, ("one", args.partitions[0]))
    common.header()
    runs: list[dict[str, Any]] = []
    with common.tidied():
        for r in range(args.rounds):
            for layout, n in variants if r % 2 == 0 else list(reversed(variants)):
                print(f"round {r + 1}/{args.rounds}: {layout} at {n} partitions, "
                      f"load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
                fresh = freshness.run(args.duration, partitions=n, shards=layout == "shards")
                runs.append({"round": r + 1, **_figures(layout, n, fresh)})
    print()
    print("| layout | partitions | round | cores busy | CPU ms / 1,000 events "
          "| freshness p50 / p99 ms | flush p50 / p99 ms | RSS MB | start-up s |")
    for run in runs:
        print(f"| {run['layout']} | {run['partitions']} | {run['round']} | {run['cores_busy']} "
              f"| {run['cpu_ms_per_1000_events']} "
              f"| {run['freshness_p50_ms']:.0f} / {run['freshness_p99_ms']:.0f} "
              f"| {run['flush_wall_p50_ms']:.0f} / {run['flush_wall_p99_ms']:.0f} "
              f"| {run['max_rss_mb']} | {run['startup_s']} |")
    path = common.save_result(NAME, {
        "method": "bench.freshness (2,000 events/s of the simulator's mix, one projector worker "
                  "child with a store per partition) at each partition count, in turn, order "
                  "reversed per round; CPU of the child from its first record to its last",
        "rate_events_per_s": freshness.RATE,
        "runs": runs,
    })
    print(f"results appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
