"""How fast (c) could go with the intake and the writer in two processes: the bound, measured.

(c) runs the projector as it ships, in one process: faust's loop takes the
records in and decodes them, a thread writes them to DuckDB, and the two
share one GIL, so they mostly take turns
(docs/decisions/0029-no-two-process-split.md). A design that gave each its
own process is the only way to run them truly side by side.
This measures the most such a design could do, without building it: the
two halves run at once in separate processes, on (c)'s events, and nothing
is handed from one to the other (a real split would add that cost).

1. **Writer alone**: ``bench._writer_child``, the live writer folding (c)'s
   200,000 events into a fresh store in 100,000-event flushes, ``--cycles`` times.
2. **Intake alone**: ``faust_ceiling``'s bare agent on ``--intake-events``
   events in 100-event records, decoding as the projector's loop does.
3. **Both at once**: the writer cycling while the intake runs. The writer's
   rate counts only its flushes that lie wholly inside the agent's window.

A two-process projector would go no faster than the slower half beside the
other. A measurement aid for docs/benchmarks.md#split_bound, not part of
``make bench`` (about 80 s): ``python -m bench.split_bound``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import common, faust_ceiling

NAME = "split_bound"


def inside(flushes: list[dict[str, Any]], first: float, last: float) -> list[dict[str, Any]]:
    """The flushes that started and ended within [first, last] (monotonic seconds)."""
    return [f for f in flushes if f["start"] >= first and f["end"] <= last]


def writer_rate(flushes: list[dict[str, Any]]) -> dict[str, Any]:
    """Events/s over the flushes' own wall time (the gaps between cycles left out)."""
    wall = sum(f["end"] - f["start"] for f in flushes)
    cpu = sum(f["cpu_s"] for f in flushes)
    events = sum(f["events"] for f in flushes)
    return {
        "flushes": len(flushes),
        "events": events,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "events_per_s": round(events / wall) if wall else None,
        "flush_walls_s": [round(f["end"] - f["start"], 3) for f in flushes],
    }


def _writer(work: Path, tag: str, *, cycles: int = 0) -> tuple[subprocess.Popen[bytes], Path]:
    out = work / f"writer-{tag}.json"
    argv = ["-m", "bench._writer_child", "--out", str(out), "--ready", str(work / f"{tag}.ready")]
    argv += ["--cycles", str(cycles)] if cycles else ["--stop", str(work / f"{tag}.stop")]
    return common.start_child(argv, env=common.repo_env(), workdir=work,
                              log_name=f"writer-{tag}"), out


def _flushes(p: subprocess.Popen[bytes], out: Path) -> list[dict[str, Any]]:
    """The writer child's flushes, or its log's tail if it wrote none."""
    if p.returncode or not out.exists():
        raise RuntimeError(f"writer child failed (exit {p.returncode}):\n{common.tail(p)}")
    return json.loads(out.read_text())


def _wait_for(path: Path, p: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the child creates ``path``; its exit or the timeout is an error."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if p.poll() is not None:
            raise RuntimeError(f"writer child exited early:\n{common.tail(p)}")
        if time.monotonic() > deadline:
            common.stop_child(p)
            raise RuntimeError(f"writer child not ready after {timeout:.0f} s:\n{common.tail(p)}")
        time.sleep(0.1)


def _intake(events: int, work: Path) -> dict[str, Any]:
    got, _produced, _wall = faust_ceiling.intake(events, array_size=100, decoder="fast",
                                                 work=work)
    got["events_per_s"] = round(got["events"] / got["elapsed_s"])
    got["elapsed_s"], got["cpu_s"] = round(got["elapsed_s"], 2), round(got["cpu_s"], 2)
    return got


def run(intake_events: int, cycles: int) -> dict[str, Any]:
    work = common.workdir(NAME)
    print(f"1/3 writer alone ({cycles} cycles of 200,000 events)", flush=True)
    p, out = _writer(work, "alone", cycles=cycles)
    common.wait_child(p, timeout=120 + 30 * cycles)
    alone_w = writer_rate(_flushes(p, out))
    print(f"2/3 intake alone ({intake_events:,} events)", flush=True)
    alone_i = _intake(intake_events, work)
    print("3/3 both at once", flush=True)
    p, out = _writer(work, "both")
    try:
        _wait_for(work / "both.ready", p, timeout=180)
        both_i = _intake(intake_events, work)
    finally:
        (work / "both.stop").touch()
    common.wait_child(p, timeout=60)
    flushes = _flushes(p, out)
    within = inside(flushes, both_i["first_monotonic"], both_i["last_monotonic"])
    if not within:
        raise RuntimeError(f"no writer flush lay inside the intake's {both_i['elapsed_s']:.2f} s "
                           "window: give more --intake-events")
    both_w = writer_rate(within)
    bound = min(both_w["events_per_s"], both_i["events_per_s"])
    figures = {
        "method": "writer (bench._writer_child: Store.flush, fresh store, (c)'s 200,000 events "
                  "as consumed, 100,000 per flush) and intake (faust_ceiling's agent, 100-event "
                  "records, fast decoder) in separate processes; 'beside' = at the same time, "
                  "writer flushes wholly inside the agent's window; nothing handed over",
        "intake_events": intake_events,
        "writer_alone": alone_w,
        "intake_alone": {k: alone_i[k] for k in ("events", "elapsed_s", "cpu_s", "events_per_s")},
        "writer_beside_intake": both_w,
        "intake_beside_writer": {k: both_i[k]
                                 for k in ("events", "elapsed_s", "cpu_s", "events_per_s")},
        "bound_events_per_s": bound,
    }
    common.header()
    common.row(NAME, "writer alone, events/s", f"{alone_w['events_per_s']:,}")
    common.row(NAME, "intake alone, events/s", f"{alone_i['events_per_s']:,}")
    common.row(NAME, "writer beside intake, events/s", f"{both_w['events_per_s']:,}")
    common.row(NAME, "intake beside writer, events/s", f"{both_i['events_per_s']:,}")
    common.row(NAME, "two-process bound, events/s", f"{bound:,}", "(c) target 100,000",
               bound >= 100_000)
    common.save_result(NAME, figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.split_bound",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--intake-events", type=int, default=1_000_000,
                    help="events the agent takes in (its window must hold whole flushes)")
    ap.add_argument("--cycles", type=int, default=5, help="writer-alone cycles")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    with common.tidied(keep=args.keep):
        run(args.intake_events, args.cycles)
    return 0


if __name__ == "__main__":
    sys.exit(main())
