"""Issue 28: a store per partition must not cost the live path.

(d) freshness and (e) status latency, as ``bench.freshness`` and
``bench.status_latency`` measure them (2,000 events/s of the simulator's mix;
50 pollers), on one node whose topics have 16 partitions: today's one file
(``--db``) against a store per partition (``--data-dir``), interleaved round by
round (the VM's speed drifts by tens of percent within an hour), the order
alternating so that neither layout always runs first. Targets: freshness p99
under 500 ms, status p99 under 20 ms (the paced and gentle phases; the closed
loop is a saturation figure).

Usage: python -m bench.shard_live [--rounds 2] [--partitions 16] [--duration 30]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from bench import common, freshness, status_latency

NAME = "shard_live"
LAYOUTS = ("one", "shards")


def _figures(fresh: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    f = fresh["freshness"]
    flush = fresh.get("flush_wall", {})
    out = {
        "freshness_p50_ms": f.get("p50_ms"),
        "freshness_p99_ms": f.get("p99_ms"),
        "freshness_records": f.get("count"),
        "all_committed": fresh["records_committed"] == fresh["records_sent"],
        "flush_wall_p50_ms": flush.get("p50_ms"),
        "flush_wall_p99_ms": flush.get("p99_ms"),
    }
    for phase in ("gentle", "paced", "closed_loop"):
        lat = status[phase]["client_latency"]
        out[f"status_{phase}_p50_ms"] = lat.get("p50_ms")
        out[f"status_{phase}_p99_ms"] = lat.get("p99_ms")
        out[f"status_{phase}_all_200"] = status_latency._all_answered(status[phase])  # noqa: SLF001
    out["status_closed_loop_requests_per_s"] = status["closed_loop"]["requests_per_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--duration", type=float, default=30.0, help="freshness seconds per run")
    ap.add_argument("--gentle", type=float, default=status_latency.GENTLE_SECONDS)
    ap.add_argument("--paced", type=float, default=10.0)
    ap.add_argument("--closed", type=float, default=10.0)
    args = ap.parse_args(argv)
    runs: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            for layout in LAYOUTS if r % 2 == 0 else tuple(reversed(LAYOUTS)):
                shards = layout == "shards"
                print(f"round {r + 1}/{args.rounds}: {layout} at {args.partitions} partitions, "
                      f"load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
                fresh = freshness.run(args.duration, partitions=args.partitions, shards=shards)
                status = status_latency.run(
                    duration=args.closed, paced_duration=args.paced, gentle_duration=args.gentle,
                    partitions=args.partitions, shards=shards,
                )
                runs.append({"round": r + 1, "layout": layout,
                             "loadavg_1m": round(os.getloadavg()[0], 2),
                             **_figures(fresh, status)})
    except BaseException:
        common.tidy(failed=True)
        raise
    common.tidy()
    print()
    print("| layout | round | freshness p50 / p99 ms | flush p50 / p99 ms "
          "| status gentle p50 / p99 ms | paced p50 / p99 ms | closed loop req/s |")
    for run in runs:
        print(f"| {run['layout']} | {run['round']} "
              f"| {run['freshness_p50_ms']:.0f} / {run['freshness_p99_ms']:.0f} "
              f"| {run['flush_wall_p50_ms']:.0f} / {run['flush_wall_p99_ms']:.0f} "
              f"| {run['status_gentle_p50_ms']:.1f} / {run['status_gentle_p99_ms']:.1f} "
              f"| {run['status_paced_p50_ms']:.1f} / {run['status_paced_p99_ms']:.1f} "
              f"| {run['status_closed_loop_requests_per_s']:,.0f} |")
    path = common.save_result(NAME, {
        "method": "bench.freshness and bench.status_latency (gentle, paced, closed loop) on one "
                  f"node, topics of {args.partitions} partitions, one file vs a store per "
                  "partition, interleaved per round, order alternating",
        "partitions": args.partitions,
        "runs": runs,
    })
    print(f"results appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
