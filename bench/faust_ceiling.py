"""(a) The framework's own ceiling: a bare faust agent that only decodes records.

N pre-produced single-event records (the simulator's mix) on one topic with 4
partitions; events/s from the first record the agent sees to the last one
(group join and startup excluded).

``run_array`` is the same agent on (c)'s records (100 events each), decoding
as the projector's loop does (the fast path): how fast the loop alone could
take (c)'s events in, before anything is written. A reference, no target.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench import common

NAME = "faust_ceiling"
ARRAY_NAME = "faust_ceiling_array"


def intake(events: int, *, array_size: int, decoder: str, work: Path,
           profile: bool = False) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Produce ``events`` on a fresh broker, then time the bare agent taking them in.

    Returns the child's figures (``bench._faust_child``), what was produced,
    and the child's wall time. ``bench.split_bound`` runs this beside a writer.
    """
    with common.broker() as b:
        topics = common.fresh_topics(single="ceiling")
        common.create_topics(b.bootstrap, topics)
        produced = common.preproduce(b.bootstrap, topics, common.sim_events(events),
                                     array_size=array_size)
        out = work / "result.json"
        t0 = time.monotonic()
        p = common.start_child(
            ["-m", "bench._faust_child", "--bootstrap", b.bootstrap, "--topic", topics.runs,
             "--expect", str(produced["events"]), "--out", str(out), "--decoder", decoder],
            env=common.child_env(b.bootstrap, topics), workdir=work, log_name="faust",
            profile=work / "profile.txt" if profile else None,
        )
        common.wait_child(p, timeout=60 + events / 2000)
        wall = time.monotonic() - t0
        if not out.exists():
            raise RuntimeError(f"faust child wrote no result:\n{common.tail(p)}")
        return json.loads(out.read_text()), produced, wall


def run(events: int, profile: bool = False, *, array_size: int = 1) -> dict[str, Any]:
    name, decoder = (NAME, "models") if array_size == 1 else (ARRAY_NAME, "fast")
    work = common.workdir(name)
    got, produced, wall = intake(events, array_size=array_size, decoder=decoder, work=work,
                                 profile=profile)
    rate = got["events"] / got["elapsed_s"]
    figures = {
        "method": "bare faust agent (projector's faust settings and iteration: noack, "
                  "current_event), decode only; "
                  "window = first to last record seen by the agent",
        "decoder": {"models": "decode_value (pydantic)",
                    "fast": "the projector's: fast path, decode_value for what it declines"}[decoder],
        "topic_layout": f"1 topic x 4 partitions, {array_size}-event records",
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
    if array_size == 1:
        common.row(name, f"events/s ({got['events']:,} records)", f"{rate:,.0f}",
                   "reference for (b)")
    else:
        common.row(name, f"events/s ({got['events']:,} ev, x{array_size})", f"{rate:,.0f}",
                   "reference for (c)")
    if profile:
        figures["profile"] = str(work / "profile.txt")
    common.save_result(name, figures)
    return figures


def run_array(events: int, profile: bool = False) -> dict[str, Any]:
    return run(events, profile, array_size=100)
