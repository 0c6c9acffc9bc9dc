"""Paging benchmark: walk a 20,000-recipient run with limit=200 through the HTTP API.

Builds a DuckDB file from the simulator (seed 3: one campaign, one completed
run of 20,000 recipients with retries and delivery reports, ~44k events)
through ``Store.flush``, serves it read-only with the app factory, walks
``/v1/campaign/{id}/runs/{run_id}/recipients?limit=200&offset=...`` to the
end (plus one empty page past it) and times every request client-side
(in-process ASGI via Starlette's TestClient entered once, so one event loop
serves every request as in a running server: routing, auth, the page's SQL
reads, payload building and JSON encoding; no network). Checks that every recipient
comes exactly once, in F11 order, and that a second walk returns the same
sequence. Appends a result to ``bench/results/paging.json``.

    .venv/bin/python -m bench.paging [--walks 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "paging.json"
SEED = 3
RECIPIENTS = 20_000
PAGE = 200
KEY = "bench-paging-key-0123456789"


def build_db(path: Path) -> tuple[str, str, int]:
    """The 20k-recipient run in a fresh file; returns (campaign_id, run_id, events)."""
    from projector.store.writer import Store
    from projector.tools.simulate import generate
    from schemas import EVENT_ADAPTER

    events = list(generate(1, RECIPIENTS, SEED))
    runs = [e for e in events if e["type"] == "run.scheduled"]
    assert len(runs) == 1, "seed 3 is expected to make exactly one run"
    models = [EVENT_ADAPTER.validate_python(e) for e in events]
    with Store(path) as store:
        for n in range(0, len(models), 10_000):
            store.flush(models[n:n + 10_000], {("campaign.runs", 0): n + 10_000})
    return runs[0]["campaign_id"], runs[0]["run_id"], len(events)


def make_client(path: Path, workspace: str) -> Any:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.keys import KeyRing
    from api.limits import Limits
    from api.readstore import ReadStore
    from projector.intake.health import PipelineStatus
    from projector.intake.metrics import Metrics

    reader = ReadStore.open_file(path)
    status = PipelineStatus(mode="read-only", ready=True, offsets=reader.offsets(),
                            flush_seq=reader.flush_seq())
    keys = KeyRing.from_dict({"keys": [{"key": KEY, "workspace_id": workspace,
                                        "scopes": ["campaigns:read", "pii:read"]}]})
    # No rate limit: the walk measures the read path, not the limiter's 429s.
    app = create_app(reader, keys=keys, status=status.snapshot, metrics=Metrics(),
                     limits=Limits(rate=0, anon_rate=0))
    client = TestClient(app, raise_server_exceptions=True)
    client.__enter__()  # one event loop for every request, as in a running server
    return client


def walk(client: Any, cid: str, rid: str, limit: int = PAGE) -> tuple[list[str], list[float], int]:
    """Every page to the end and one past it: (recipient ids in order, seconds per page, total)."""
    ids: list[str] = []
    times: list[float] = []
    offset = 0
    total = -1
    while True:
        t0 = time.perf_counter()
        resp = client.get(f"/v1/campaign/{cid}/runs/{rid}/recipients",
                          params={"limit": limit, "offset": offset},
                          headers={"X-API-Key": KEY})
        times.append(time.perf_counter() - t0)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        total = body["meta"]["total"]
        items = body["data"]
        ids += [r["recipient_id"] for r in items]
        if not items:
            return ids, times, total
        offset += limit


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walks", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "paging.duckdb"
        t0 = time.perf_counter()
        cid, rid, n_events = build_db(path)
        build_s = time.perf_counter() - t0
        from projector.tools.simulate import generate

        workspace = next(iter(generate(1, 0, SEED)))["workspace_id"]
        client = make_client(path, workspace)
        walk(client, cid, rid)  # warm-up
        all_times: list[float] = []
        first: list[str] | None = None
        for _ in range(args.walks):
            ids, times, total = walk(client, cid, rid)
            assert len(ids) == len(set(ids)) == total == RECIPIENTS
            assert first is None or ids == first
            first = ids
            all_times += times
        ms = [t * 1000 for t in all_times]
        result = {
            "benchmark": "paging",
            "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(),
                        "loadavg_at_start": list(os.getloadavg()),
                        "date": datetime.now(UTC).isoformat(timespec="seconds")},
            "method": "TestClient (in-process ASGI, one event loop) over a read-only DuckDB "
                      "file built from "
                      f"`simulate.generate(1, {RECIPIENTS}, seed={SEED})` through Store.flush; "
                      f"{args.walks} walks of limit={PAGE} after one warm-up walk",
            "events": n_events,
            "build_seconds": round(build_s, 1),
            "recipients": RECIPIENTS,
            "pages_per_walk": len(all_times) // args.walks,
            "requests": len(ms),
            "exactly_once_stable_order": True,
            "page_ms": {"p50": round(statistics.median(ms), 2),
                        "p90": round(percentile(ms, 0.90), 2),
                        "p99": round(percentile(ms, 0.99), 2),
                        "max": round(max(ms), 2), "mean": round(statistics.fmean(ms), 2)},
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    history = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    history.append(result)
    RESULTS.write_text(json.dumps(history, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
