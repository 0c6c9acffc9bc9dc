"""Scatter-gather cost: ``/v1/campaigns`` on three nodes against one node, and one forwarding hop.

Builds, for each size, a workspace of N campaigns (each with two runs) spread
over 3 partitions, one DuckDB file per node holding its partition's campaigns
and one file holding all, and serves each file from its own process
(``bench._cluster_node``: a read-only API with a static owner table, rate
limits off). Then times, client-side over keep-alive connections:

- the list, first page and a middle page (limit 50), on the single node and
  on a cluster node (its own part read locally, two parts asked of the others,
  merged);
- a campaign's status asked of its owner and of a non-owner (one forward).

Checks that the cluster's pages equal the single node's. Appends a result to
``bench/results/cluster_list.json``.

    .venv/bin/python -m bench.cluster_list [--sizes 1000,10000] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    repo_env,
    save_result,
    start_child,
    stop_child,
    summary_ms,
    tidy,
    wait_http,
    workdir,
)

KEY = "bench-cluster-key-0123456789"
WS = "ws_bench"
PARTITIONS = 3


def _events(n: int) -> list[Any]:
    from schemas import CampaignDefined, RunScheduled

    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    out: list[Any] = []
    for i in range(n):
        cid = f"cmp-{i:06d}-{(i * 2654435761) % 100000:05d}"
        out.append(CampaignDefined(event_id=f"d{i}", campaign_id=cid, workspace_id=WS,
                                   occurred_at=t0, name=f"Campaign {i}", channel="SMS",
                                   provider="mock"))
        for r in range(2):
            out.append(RunScheduled(event_id=f"s{i}-{r}", campaign_id=cid, workspace_id=WS,
                                    occurred_at=t0, run_id=f"run-{r}",
                                    scheduled_at=t0 + timedelta(days=r),
                                    recipient_count=10, batch_size=10))
    return out


def _db(path: Path, events: list[Any]) -> Path:
    from projector.store.writer import Store

    with Store(path) as store:
        for k in range(0, len(events), 20_000):
            store.flush(events[k:k + 20_000], {("campaign.runs", 0): k + 20_000})
    return path


def _time(client: httpx.Client, url: str, requests: int) -> tuple[list[float], Any]:
    for _ in range(10):
        client.get(url).raise_for_status()
    took = []
    body = None
    for _ in range(requests):
        t = time.perf_counter()
        resp = client.get(url)
        took.append(time.perf_counter() - t)
        resp.raise_for_status()
        body = resp.json()
    return took, body


def run_size(n: int, requests: int) -> dict[str, Any]:
    from schemas.partitioner import partition_of

    work = workdir("cluster-list")
    events = _events(n)
    ports = {name: 18000 + k for k, name in enumerate(["single", "a", "b", "c"])}
    urls = {name: f"http://127.0.0.1:{p}" for name, p in ports.items()}
    owners = {str(p): urls[name] for p, name in enumerate("abc")}
    keys = json.dumps({"keys": [{"key": KEY, "workspace_id": WS,
                                 "scopes": ["campaigns:read", "analytics:read"]}]})
    dbs = {"single": _db(work / "single.duckdb", events)}
    for p, name in enumerate("abc"):
        dbs[name] = _db(work / f"{name}.duckdb",
                        [e for e in events if partition_of(e.campaign_id, PARTITIONS) == p])
    procs = {}
    try:
        for name in ports:
            me = "-" if name == "single" else urls[name]
            procs[name] = start_child(
                ["-m", "bench._cluster_node", str(dbs[name]), str(ports[name]), me,
                 json.dumps(owners), keys], repo_env(), work, name)
        for name, url in urls.items():
            wait_http(url + "/healthz", 60, procs[name])
        figures: dict[str, Any] = {"campaigns": n}
        with httpx.Client(headers={"X-API-Key": KEY}, timeout=30) as client:
            for page, query in [("first", "limit=50"), ("middle", f"limit=50&offset={n // 2}")]:
                single, expected = _time(client, f"{urls['single']}/v1/campaigns?{query}",
                                         requests)
                cluster, got = _time(client, f"{urls['a']}/v1/campaigns?{query}", requests)
                assert got["data"] == expected["data"] and got["meta"] == expected["meta"]
                figures[f"list_{page}_single"] = summary_ms(single)
                figures[f"list_{page}_three_nodes"] = summary_ms(cluster)
            cid = events[0].campaign_id
            owner = "abc"[partition_of(cid, PARTITIONS)]
            other = next(x for x in "abc" if x != owner)
            direct, _ = _time(client, f"{urls[owner]}/v1/campaign/{cid}/status", requests)
            hop, _ = _time(client, f"{urls[other]}/v1/campaign/{cid}/status", requests)
            figures["status_at_owner"] = summary_ms(direct)
            figures["status_through_non_owner"] = summary_ms(hop)
        return figures
    finally:
        for p in procs.values():
            stop_child(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    results = []
    failed = True
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            figures = run_size(n, args.requests)
            results.append(figures)
            for name, s in figures.items():
                if isinstance(s, dict):
                    print(f"{n:>6} campaigns  {name:<28} p50 {s['p50_ms']:>7} ms  "
                          f"p90 {s['p90_ms']:>7} ms", flush=True)
        failed = False
    finally:
        tidy(failed=failed)
    print(f"results appended to {save_result('cluster_list', {'sizes': results})}")


if __name__ == "__main__":
    main()
