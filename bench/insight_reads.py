"""(f) The delivery-insight reads on a run of 1,000,000 recipients while ``projector serve``
ingests 2,000 events/s (issue 30, item 5: each endpoint's p99 under 100 ms).

The run is the simulator's one-campaign stream (seed 3 makes one run) of
``--recipients`` recipients, about 2.2 events each. All but its last
``--live`` events are folded beforehand into a DuckDB file (the set-based
rebuild ``projector replay`` uses, then the keys a writer builds); ``projector
serve`` opens that file, and a child produces the last events (the run's last
submits and most of its delivery reports) at ``--rate`` events/s while this
process reads. So the run being read is the run changing: its counters,
timeline, failures and latency move under the reads, and every answer
after a flush is built again from the live projections (the counts the fold
keeps per run, docs/decisions/0038-insight-kept-by-the-fold.md).

The receipt window is set to 10 minutes (``PROJECTOR_RECEIPT_WINDOW``): the
run's first sends are older than that on its own clock while receipts are
still pending, so status, analytics and stats count ``receipt_overdue`` over
the run's recipients on every answer, instead of the shortcut from the run
rows that a 72 h window allows a run of minutes.

``--ingest other`` measures the other case a dashboard meets: the run is
finished (all its events folded beforehand) and the ingest is other
campaigns (the simulator's mix, as in (e)). The run's position does not move,
so its answers are built once and then served from the per-position cache.

One client reads in a closed loop, the endpoints in turn, without
``If-None-Match`` (every answer is built; none is a 304), first for
``--idle`` seconds before the ingest starts, then for as long as it lasts.
Latency is client-side (request sent -> body read; the client is httpx in
this process, which the producer child keeps free of other work), per
endpoint: p50, p90, p99 and max. The watermark of ``/readyz`` before and
after shows the ingest kept pace. Appends to ``bench/results/insight_reads.json``.

    .venv/bin/python -m bench.insight_reads [--recipients 1000000] [--live 200000]
        [--ingest run other]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from bench import common
from bench._serve import serve
from projector.intake import runtime

NAME = "insight_reads"
SEED = 3  # one campaign, one run
TARGET_MS = 100.0
RECEIPT_WINDOW = "10m"
OTHER = {"campaigns": 12, "recipients": 3000, "seed": 11}  # (e)'s mix: --ingest other
# What a dashboard of the run asks (the target applies to these five), and the
# views that carry receipt_overdue (measured beside them, no target here).
TARGETED = ("timeline", "timeline 1m", "failures (run)", "failures (campaign)", "latency")
ENDPOINTS = {
    "timeline": "/v1/campaign/{cid}/runs/{rid}/timeline",
    "timeline 1m": "/v1/campaign/{cid}/runs/{rid}/timeline?bucket=1m",
    "failures (run)": "/v1/campaign/{cid}/failures?run_id={rid}",
    "failures (campaign)": "/v1/campaign/{cid}/failures",
    "latency": "/v1/campaign/{cid}/runs/{rid}/latency",
    "status": "/v1/campaign/{cid}/status",
    "analytics": "/v1/campaign/{cid}/analytics",
    "stats": "/v1/campaign/{cid}/stats",
}


def _events(recipients: int) -> list[dict[str, Any]]:
    from projector.tools.simulate import generate

    events = list(generate(1, recipients, SEED))
    runs = {e["run_id"] for e in events if e["type"] == "run.scheduled"}
    if len(runs) != 1:
        raise SystemExit(f"seed {SEED} made {len(runs)} runs; this benchmark reads one")
    return events


def build_db(path: Path, events: list[dict[str, Any]]) -> None:
    """Fold ``events`` into a new file as ``projector replay`` does, keys built."""
    from projector.store.setfold import typed
    from projector.store.writer import Store

    stage = pa.table({
        "event_type": pa.array([e["type"] for e in events], pa.string()),
        "event": pa.array([orjson.dumps(e).decode() for e in events], pa.string()),
    })
    store = Store(path, memory_limit="4GB", threads=os.cpu_count() or 1).open()
    try:
        store.con.register("insight_stage", stage)
        store.rebuild(typed("insight_stage"), {}, materialise=True)
        store.con.unregister("insight_stage")
        store.flush([], {})  # builds the keys a rebuild leaves to the first writer
    finally:
        store.close()


def _read(client: Any, paths: dict[str, str], key: str, seconds: float,
          until: Any = None) -> dict[str, list[float]]:
    """Closed loop over ``paths`` for ``seconds`` (or while ``until()`` is false)."""
    lat: dict[str, list[float]] = {name: [] for name in paths}
    codes: dict[str, dict[int, int]] = {name: {} for name in paths}
    stop = time.monotonic() + seconds
    while time.monotonic() < stop and not (until is not None and until()):
        for name, path in paths.items():
            t0 = time.perf_counter()
            r = client.get(path, headers={"X-API-Key": key})
            lat[name].append(time.perf_counter() - t0)
            codes[name][r.status_code] = codes[name].get(r.status_code, 0) + 1
    bad = {n: c for n, c in codes.items() if set(c) != {200}}
    if bad:
        raise RuntimeError(f"answers other than 200: {bad}")
    return lat


def _applied(client: Any) -> int:
    """Records applied so far: the sum of ``/readyz``'s watermark (next offsets)."""
    return sum(common.parse_watermark(client.get("/readyz").json()["data"]["watermark"]).values())


def _phase(lat: dict[str, list[float]]) -> dict[str, Any]:
    return {name: common.summary_ms(values) for name, values in lat.items()}


def run(recipients: int, live: int, rate: float, idle: float, ingest: str,
        profile: bool = False) -> dict[str, Any]:
    """``ingest``: ``run`` (the run's own last events) or ``other`` (other campaigns)."""
    import httpx

    t0 = time.monotonic()
    events = _events(recipients)
    if not 0 < live < len(events):
        raise SystemExit(f"--live must be between 1 and {len(events) - 1}")
    cid, ws = events[0]["campaign_id"], events[0]["workspace_id"]
    rid = next(e["run_id"] for e in events if e["type"] == "run.scheduled")
    work = common.workdir(f"{NAME}-data")
    db, tail_file = work / "run.duckdb", work / "tail.jsonl"
    if ingest == "run":
        folded, streamed = events[:-live], events[-live:]
    else:
        folded, streamed = events, list(common.sim_events(live, **OTHER))
    with tail_file.open("wb") as f:
        for e in streamed:
            f.write(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE))
    print(f"  {len(events):,} events generated in {time.monotonic() - t0:.0f} s; "
          f"folding {len(folded):,} into {db}", flush=True)
    t1 = time.monotonic()
    build_db(db, folded)
    built_s = time.monotonic() - t1
    print(f"  built in {built_s:.0f} s", flush=True)
    del events, folded, streamed
    paths = {n: p.format(cid=cid, rid=rid) for n, p in ENDPOINTS.items()}
    with common.broker() as b:
        topics = common.fresh_topics()
        common.create_topics(b.bootstrap, topics)
        with serve(b.bootstrap, topics, NAME, db=db, receipt_window=RECEIPT_WINDOW,
                   rate_limit=0, profile=profile) as s, \
                httpx.Client(base_url=s.url, timeout=30) as client:
            key = s.keys[ws]
            common.wait_http(f"{s.url}/readyz", 120, s.proc)
            runtime.settle()  # the client's own collections are not the server's latency
            _read(client, paths, key, 2.0)  # warm: first reads fault the file's pages in
            quiet = _read(client, paths, key, idle)
            before = _applied(client)
            producer = common.start_child(
                ["-m", "bench._paced_produce", str(tail_file), str(rate)],
                env=common.child_env(b.bootstrap, topics), workdir=s.workdir,
                log_name="produce")
            started = time.monotonic()
            try:
                busy = _read(client, paths, key, 3600, until=lambda: producer.poll() is not None)
            finally:
                produced_s = time.monotonic() - started
                code = common.stop_child(producer)
            if code not in (0, None):
                raise RuntimeError(f"the producer failed ({code}): {common.tail(producer)}")
            lagging = _applied(client) - before
            status = client.get(paths["status"], headers={"X-API-Key": key}).json()["data"]
    figures = {
        "ingest": ingest,
        "method": "projector serve on a prebuilt run + the run's last events produced at "
                  "a paced rate by a child; one client, closed loop over the endpoints, "
                  "no If-None-Match; client-side latency",
        "recipients": recipients,
        "events_live": live,
        "ingest_events_per_s": rate,
        "ingest_seconds": round(produced_s, 1),
        "records_applied_during_reads": lagging,
        "receipt_window": RECEIPT_WINDOW,
        "build_seconds": round(built_s, 1),
        "final_status_total_recipients": status.get("total_recipients"),
        "idle": _phase(quiet),
        "ingesting": _phase(busy),
        "target": f"p99 < {TARGET_MS:.0f} ms per endpoint while ingesting",
    }
    worst = max(figures["ingesting"][n].get("p99_ms", float("inf")) for n in TARGETED)
    figures["target"] += f" ({', '.join(TARGETED)})"
    figures["target_met"] = worst < TARGET_MS
    for name, summary in figures["ingesting"].items():
        idle_p99 = figures["idle"][name].get("p99_ms", float("nan"))
        targeted = name in TARGETED
        common.row(NAME, f"{ingest}: {name}: p50/p99 (idle p99)",
                   f"{summary['p50_ms']:,.1f} / {summary['p99_ms']:,.1f} ms "
                   f"({idle_p99:,.1f})", f"p99 < {TARGET_MS:.0f} ms" if targeted else "",
                   summary["p99_ms"] < TARGET_MS if targeted else None)
    common.save_result(NAME, figures)
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipients", type=int, default=1_000_000)
    ap.add_argument("--live", type=int, default=200_000, help="events produced while reading")
    ap.add_argument("--rate", type=float, default=2000.0, help="ingest, events/s")
    ap.add_argument("--idle", type=float, default=15.0, help="seconds read before the ingest")
    ap.add_argument("--ingest", nargs="+", choices=("run", "other"), default=["run", "other"],
                    help="what is ingested while reading: the run's own last events, or "
                         "other campaigns (the run finished)")
    ap.add_argument("--keep", action="store_true", help="keep the work folders")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy the server (profile.txt in its kept work folder; implies --keep)")
    args = ap.parse_args()
    common.header()
    with common.tidied(keep=args.keep or args.profile):
        for ingest in args.ingest:
            run(args.recipients, args.live, args.rate, args.idle, ingest, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
