"""Run the benchmarks: ``python -m bench.run_all [--events N] [--only NAME] [--profile]``.

(a) faust_ceiling, (b) projector_single, (c) projector_array, (d) freshness,
(e) status_latency, and faust_ceiling_array: (a)'s agent on (c)'s records, a
reference for (c). Each prints table rows and appends its figures to
``bench/results/<name>.json``. Defaults take about 3 minutes on the 2-core
dev machine: 100,000 single-event records for (a) and
(b), 200,000 events in 100-event array records for (c) and
faust_ceiling_array, 30 s at 2,000 events/s for (d), 30 s gentle + 10 s
paced + 20 s closed-loop polling for (e).

``--profile`` runs the children under ``py-spy record`` (pip install py-spy
into the venv; a measurement aid only) and prints a summary; profiled runs
are slower, so their figures are not comparable with unprofiled ones.
Each benchmark's work folders (logs, databases) are removed once it has
succeeded; ``--keep``, ``--profile`` or a failure keeps them and prints where.
No assertions: the benchmarks report figures and whether targets are met.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from bench import common

NAMES = ("faust_ceiling", "projector_single", "faust_ceiling_array", "projector_array",
         "freshness", "status_latency")


def _latest(name: str) -> dict | None:
    path = common.RESULTS / f"{name}.json"
    if not path.exists():
        return None
    runs = json.loads(path.read_text())
    return runs[-1] if runs else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000,
                    help="single-event records for (a) and (b) (default 100,000)")
    ap.add_argument("--array-events", type=int, default=None,
                    help="events for (c) in 100-event records (default 2 x --events)")
    ap.add_argument("--only", choices=NAMES, action="append",
                    help="run only this benchmark (repeatable)")
    ap.add_argument("--freshness-seconds", type=float, default=30.0)
    ap.add_argument("--status-seconds", type=float, default=20.0)
    ap.add_argument("--profile", action="store_true", help="run children under py-spy")
    ap.add_argument("--keep", action="store_true",
                    help="keep each benchmark's work folder (logs, database) in /tmp")
    args = ap.parse_args(argv)
    only = set(args.only or NAMES)
    array_events = args.array_events or 2 * args.events

    info = common.machine_info()
    print(f"machine: {info['nproc']} CPUs ({info['cpu_model']}), {info['ram_gib']} GiB RAM, "
          f"Python {info['python']}, load average {info['loadavg_at_start']}, {info['date']}")
    common.header()
    failures = 0
    started = time.monotonic()
    results: dict[str, dict] = {}

    def attempt(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        nonlocal failures
        if name not in only:
            return
        try:
            results[name] = fn()
            prof = results[name].get("profile")
            if prof and Path(prof).exists():
                from bench.profile_summary import summarise

                print(summarise(Path(prof), top=15), flush=True)
        except Exception:
            failures += 1
            print(f"| {name:<19} | FAILED (see traceback below)", flush=True)
            traceback.print_exc()
            common.tidy(failed=True)
        else:
            common.tidy(keep=args.keep or args.profile)

    from bench import faust_ceiling, freshness, projector_throughput, status_latency

    attempt("faust_ceiling", lambda: faust_ceiling.run(args.events, args.profile))
    reference = results.get("faust_ceiling") or _latest("faust_ceiling") or {}
    attempt("projector_single", lambda: projector_throughput.run_single(
        args.events, reference.get("events_per_s"), args.profile,
        reference.get("events_per_cpu_s")))
    attempt("faust_ceiling_array", lambda: faust_ceiling.run_array(array_events, args.profile))
    attempt("projector_array", lambda: projector_throughput.run_array(array_events, args.profile))
    attempt("freshness", lambda: freshness.run(args.freshness_seconds, args.profile))
    attempt("status_latency", lambda: status_latency.run(args.status_seconds, 10.0, args.profile))
    print(f"done in {time.monotonic() - started:.0f} s; results in {common.RESULTS}/", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
