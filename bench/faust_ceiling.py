"""(a) The framework's own ceiling: a bare faust agent that only decodes records.

N pre-produced single-event records (the simulator's mix) on one topic with 4
partitions; events/s from the first record the agent sees to the last one
(group join and startup excluded).
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench import common

NAME = "faust_ceiling"


def run(events: int, profile: bool = False) -> dict[str, Any]:
    work = common.workdir(NAME)
    with common.broker() as b:
        topics = common.fresh_topics(single="ceiling")
        common.create_topics(b.bootstrap, topics)
        produced = common.preproduce(b.bootstrap, topics, common.sim_events(events), array_size=1)
        out = work / "result.json"
        t0 = time.monotonic()
        p = common.start_child(
            ["-m", "bench._faust_child", "--bootstrap", b.bootstrap, "--topic", topics.runs,
             "--expect", str(produced["events"]), "--out", str(out)],
            env=common.child_env(b.bootstrap, topics), workdir=work, log_name="faust",
            profile=work / "profile.txt" if profile else None,
        )
        common.wait_child(p, timeout=60 + events / 2000)
        wall = time.monotonic() - t0
        if not out.exists():
            raise RuntimeError(f"faust child wrote no result:\n{common.tail(p)}")
        got = json.loads(out.read_text())
    rate = got["events"] / got["elapsed_s"]
    figures = {
        "method": "bare faust agent (projector's faust settings and iteration: noack, "
                  "current_event), decode only; "
                  "window = first to last record seen by the agent",
        "topic_layout": "1 topic x 4 partitions, single-event records",
        "produced": produced,
        "records": got["records"],
        "events": got["events"],
        "startup_and_join_s": round(got["startup_s"], 2),
        "elapsed_s": round(got["elapsed_s"], 2),
        "cpu_s": round(got["cpu_s"], 2),
        "events_per_cpu_s": round(got["events"] / got["cpu_s"]) if got["cpu_s"] else None,
        "cpu_share_of_window": round(got["cpu_s"] / got["elapsed_s"], 2),
        "child_wall_s": round(wall, 2),
        "events_per_s": round(rate),
        "profiled": profile,  # py-spy attached: slower, not comparable
        "workdir": str(work),
    }
    common.row(NAME, f"events/s ({got['events']:,} records)", f"{rate:,.0f}", "reference for (b)")
    if profile:
        figures["profile"] = str(work / "profile.txt")
    common.save_result(NAME, figures)
    return figures
