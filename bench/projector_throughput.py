"""(b) and (c): the real projector over pre-produced records, single events or arrays.

The events are the simulator's realistic mix, produced with the project's
``EventEmitter`` (``array_size`` 1 or 100) to the four contract topics (fresh
names, 4 partitions each) before the projector starts. The projector runs as
a child process built like ``projector worker --until-caught-up`` (see
``bench._projector_child``); events/s = events applied / (caught-up commit -
first record), so startup and the group join (~4-5 s) are excluded.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench import common


def run(name: str, events: int, array_size: int, profile: bool = False) -> dict[str, Any]:
    work = common.workdir(name)
    with common.broker() as b:
        topics = common.fresh_topics()
        common.create_topics(b.bootstrap, topics)
        produced = common.preproduce(b.bootstrap, topics, common.sim_events(events),
                                     array_size=array_size)
        ends = common.log_ends(b.bootstrap, topics.sources)
        (work / "target.json").write_text(json.dumps([[t, p, o] for (t, p), o in ends.items()]))
        out = work / "result.json"
        t0 = time.monotonic()
        p = common.start_child(
            ["-m", "bench._projector_child", "--target", str(work / "target.json"),
             "--out", str(out)],
            env=common.child_env(b.bootstrap, topics, db=work / "bench.duckdb"),
            workdir=work, log_name="projector",
            profile=work / "profile.txt" if profile else None,
        )
        code = common.wait_child(p, timeout=90 + events / 1000)
        wall = time.monotonic() - t0
        if not out.exists() or code != 0:
            raise RuntimeError(f"projector child exited {code}:\n{common.tail(p)}")
        got = json.loads(out.read_text())
    if got["elapsed_s"] is None:
        raise RuntimeError(f"projector never caught up: {got}")
    rate = got["events"] / got["elapsed_s"]
    figures = {
        "method": "projector worker built as `projector worker --until-caught-up` in a child "
                  "process; window = first record reaching Pipeline.add -> the flush commit "
                  "that made DuckDB's offsets reach the log ends",
        "array_size": array_size,
        "topic_layout": "4 contract topics x 4 partitions",
        "produced": produced,
        "records": sum(ends.values()),
        "events": got["events"],
        "flushes": got["flushes"],
        "startup_and_join_s": round(got["startup_s"], 2),
        "elapsed_s": round(got["elapsed_s"], 2),
        "cpu_s": round(got["cpu_s"], 2) if got["cpu_s"] else None,
        "events_per_cpu_s": round(got["events"] / got["cpu_s"]) if got["cpu_s"] else None,
        "cpu_share_of_window": round(got["cpu_s"] / got["elapsed_s"], 2) if got["cpu_s"] else None,
        "flush_seconds_total": round(got["flush_seconds_total"], 2),
        "flush_share_of_window": round(got["flush_seconds_total"] / got["elapsed_s"], 3),
        "timeline": got["timeline"],
        "child_wall_s": round(wall, 2),
        "settings": got["settings"],
        "max_rss_mb": round(got["max_rss_mb"]) if got.get("max_rss_mb") else None,
        "events_per_s": round(rate),
        "profiled": profile,  # py-spy attached: slower, not comparable
        "workdir": str(work),
    }
    if profile:
        figures["profile"] = str(work / "profile.txt")
    return figures


def run_single(events: int, ceiling: float | None, profile: bool = False,
               ceiling_per_cpu: float | None = None) -> dict[str, Any]:
    name = "projector_single"
    figures = run(name, events, 1, profile)
    rate = figures["events_per_s"]
    if ceiling_per_cpu and figures.get("events_per_cpu_s"):
        # Same ratio per CPU-second of the consuming process: robust to a busy machine.
        figures["share_of_ceiling_per_cpu_s"] = round(
            figures["events_per_cpu_s"] / ceiling_per_cpu, 3)
    if ceiling:
        share = rate / ceiling
        figures["ceiling_events_per_s"] = round(ceiling)
        figures["share_of_ceiling"] = round(share, 3)
        figures["target"] = ">= 70% of faust_ceiling"
        figures["target_met"] = share >= 0.7
        common.row(name, f"events/s ({figures['events']:,} events)", f"{rate:,.0f}",
                   ">= 70% of (a)", share >= 0.7)
        common.row(name, "share of faust_ceiling", f"{share:.0%}", ">= 70%", share >= 0.7)
        if "share_of_ceiling_per_cpu_s" in figures:
            common.row(name, "same, per CPU-second", f"{figures['share_of_ceiling_per_cpu_s']:.0%}",
                       "(informative)")
    else:
        common.row(name, f"events/s ({figures['events']:,} events)", f"{rate:,.0f}",
                   ">= 70% of (a) (no (a))")
    common.save_result(name, figures)
    return figures


def run_array(events: int, profile: bool = False) -> dict[str, Any]:
    name = "projector_array"
    figures = run(name, events, 100, profile)
    rate = figures["events_per_s"]
    figures["target"] = ">= 100,000 events/s"
    figures["target_met"] = rate >= 100_000
    common.row(name, f"events/s ({figures['events']:,} ev, x100)", f"{rate:,.0f}",
               ">= 100,000", rate >= 100_000)
    common.save_result(name, figures)
    return figures
