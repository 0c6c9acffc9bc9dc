"""Array-record catch-up on one node and on two (issue 29): does a second process double it?

One process reaches (c)'s 44,000-69,000 events/s because its intake and its
writer take turns at one GIL; two nodes of a consumer group each fold their
own partitions in a process of their own. Measured here, in one run, on the
simulator's mix in 100-event array records (today's (c)), each node built as
``projector worker --until-caught-up`` (``bench._projector_child``) with its
own store (``--layout shards``, default: a store per partition, as cluster
nodes keep; ``file``: one file):

* ``1 pinned``: one node on core 0 (``sched_setaffinity``, as ``taskset -c 0``)
  catching up on all ``--events``;
* ``2 pinned``: two nodes, on cores 0 and 1, each catching up on half of them;
* ``2 unpinned``: the same two nodes, placed by the kernel.

The two nodes' halves are the events of two disjoint sets of campaigns, each
produced to topics of its own (4 partitions each), so that each node starts
on its share at once: a group's join and rebalance (seconds, measured by
``bench.failover``) stay out of the window, and the split is the one a group
of two settles on. A node's window runs from its first record to the commit
that stored its log ends; two nodes' rate is all their events over the span
from the first node's first record to the last node's last commit. The
embedded broker runs unpinned beside them. Appends to
``bench/results/catchup_scale.json``.

    .venv/bin/python -m bench.catchup_scale [--events 400000] [--layout shards|file]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any

from bench import common

NAME = "catchup_scale"
ARRAY_SIZE = 100


def _split(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two streams of disjoint campaigns (each campaign whole, in its own order)."""
    halves: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for e in events:
        halves[zlib.crc32(e["campaign_id"].encode()) % 2].append(e)
    return halves


def _node(bootstrap: str, topics: Any, work: Path, name: str, layout: str,
          core: int | None) -> Any:
    """Start one node catching up on ``topics``; pinned to ``core`` unless None."""
    ends = common.log_ends(bootstrap, topics.sources)
    (work / f"{name}-target.json").write_text(
        json.dumps([[t, p, o] for (t, p), o in ends.items()]))
    store = {"data_dir": work / f"{name}-shards"} if layout == "shards" \
        else {"db": work / f"{name}.duckdb"}  # fmt: skip
    p = common.start_child(
        ["-m", "bench._projector_child", "--target", str(work / f"{name}-target.json"),
         "--out", str(work / f"{name}-result.json")],
        env=common.child_env(bootstrap, topics, **store), workdir=work, log_name=name)
    if core is not None:
        os.sched_setaffinity(p.pid, {core})  # before its imports end: every thread inherits it
    p.result_path = work / f"{name}-result.json"  # type: ignore[attr-defined]
    return p


def _finish(nodes: list[Any], timeout: float) -> list[dict[str, Any]]:
    results = []
    for p in nodes:
        code = common.wait_child(p, timeout=timeout)
        if code != 0 or not p.result_path.exists():
            raise RuntimeError(f"node exited {code}:\n{common.tail(p)}")
        got = json.loads(p.result_path.read_text())
        if got["caught_up_monotonic"] is None:
            raise RuntimeError(f"a node never caught up: {got}")
        results.append(got)
    return results


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _variant(broker: Any, topic_sets: list[Any], work: Path, name: str, layout: str,
             cores: list[int | None], timeout: float) -> dict[str, Any]:
    bootstrap = broker.bootstrap
    broker_cpu = _cpu_seconds(broker.pid)
    nodes = [_node(bootstrap, t, work, f"{name}-{i}", layout, c)
             for i, (t, c) in enumerate(zip(topic_sets, cores, strict=True))]
    got = _finish(nodes, timeout)
    # The broker serves every fetch on the same two cores: what it took of them.
    broker_cpu = _cpu_seconds(broker.pid) - broker_cpu
    events = sum(g["events"] for g in got)
    span = max(g["caught_up_monotonic"] for g in got) - min(g["first_monotonic"] for g in got)
    out = {
        "nodes": len(got),
        "cores": cores,
        "events": events,
        "window_s": round(span, 2),
        "events_per_s": round(events / span),
        "nodes_cpu_s": round(sum(g["cpu_s"] or 0 for g in got), 2),
        "broker_cpu_s": round(broker_cpu, 2),  # over the whole variant, start-up included
        "per_node": [{"events": g["events"], "elapsed_s": round(g["elapsed_s"], 2),
                      "events_per_s": round(g["events"] / g["elapsed_s"]),
                      "cpu_s": round(g["cpu_s"], 2) if g["cpu_s"] else None,
                      "flushes": g["flushes"], "max_rss_mb": round(g["max_rss_mb"])}
                     for g in got],
    }  # fmt: skip
    print(f"  {name}: {events:,} events in {span:.2f} s = {events / span:,.0f} events/s "
          f"(per node: {', '.join(str(n['events_per_s']) for n in out['per_node'])}; "
          f"CPU s: nodes {out['nodes_cpu_s']}, broker {out['broker_cpu_s']})",
          flush=True)  # fmt: skip
    return out


def run(n_events: int, layout: str) -> dict[str, Any]:
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("two cores are needed to pin two nodes")
    events = list(common.sim_events(n_events))
    halves = _split(events)
    work = common.workdir(NAME)
    timeout = 120 + n_events / 2000
    with common.broker() as b:
        whole, half_a, half_b = (common.fresh_topics() for _ in range(3))
        produced = {}
        for topics, stream in ((whole, events), (half_a, halves[0]), (half_b, halves[1])):
            common.create_topics(b.bootstrap, topics)
            produced[topics.runs] = common.preproduce(
                b.bootstrap, topics, stream, array_size=ARRAY_SIZE)
        del events, halves
        variants = {
            "1_pinned": _variant(b, [whole], work, "one", layout, [0], timeout),
            "2_pinned": _variant(b, [half_a, half_b], work, "two-pinned", layout,
                                 [0, 1], timeout),
            "2_unpinned": _variant(b, [half_a, half_b], work, "two-free", layout,
                                   [None, None], timeout),
        }
    one = variants["1_pinned"]["events_per_s"]
    two = variants["2_pinned"]["events_per_s"]
    free = variants["2_unpinned"]["events_per_s"]
    figures = {
        "method": "bench._projector_child per node (projector worker --until-caught-up); "
                  "two nodes on disjoint campaign halves in topics of their own; "
                  "sched_setaffinity for pinning; broker unpinned",
        "array_size": ARRAY_SIZE,
        "layout": layout,
        "topic_layout": "4 contract topics x 4 partitions per node's topics",
        "produced": list(produced.values()),
        **variants,
        "2_pinned_vs_1_pinned": round(two / one, 2),
        "targets": {
            "2_pinned_at_least_1_8x_1_pinned": two >= 1.8 * one,
            "2_nodes_at_least_100k": max(two, free) >= 100_000,
        },
        "workdir": str(work),
    }
    common.row(NAME, "1 node pinned: events/s", f"{one:,}", "")
    common.row(NAME, "2 nodes pinned: events/s", f"{two:,}", ">= 1.8x 1 pinned",
               two >= 1.8 * one)
    common.row(NAME, "2 nodes unpinned: events/s", f"{free:,}", "")
    common.row(NAME, "2 nodes: best events/s", f"{max(two, free):,}", ">= 100,000",
               max(two, free) >= 100_000)
    common.save_result(NAME, figures)
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--layout", choices=("shards", "file"), default="shards")
    ap.add_argument("--keep", action="store_true", help="keep the work folders")
    args = ap.parse_args()
    common.header()
    with common.tidied(keep=args.keep):
        run(args.events, args.layout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
