"""``projector cluster --url URL``: every partition's owner, as a running node sees the group."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from service.commands.base import command, option

if TYPE_CHECKING:
    from projector.settings import Settings


@command(
    "cluster",
    "show which node owns which partition (a running serve's /v1/cluster)",
    option("--url", default="http://127.0.0.1:8000", help="any running serve's base URL"),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 settled, 3 while the group rebalances, 1 unreachable."""
    import httpx

    url = args.url.rstrip("/")
    try:
        resp = httpx.get(f"{url}/v1/cluster", timeout=10)
        view = resp.json()["data"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
        print(f"projector cluster: no cluster view from {url}: {e}")
        return 1
    if view is None or view.get("url") is None:
        print(f"{url} is a single node: it owns every partition")
        return 0
    print(f"{'partition':>9}  owner")
    for partition, owner in sorted(view["owners"].items(), key=lambda kv: int(kv[0])):
        here = "  (this node)" if owner == view["url"] else ""
        print(f"{partition:>9}  {owner or '(rebalancing)'}{here}")
    if not view["settled"]:
        print("the group is rebalancing: owners are named once it settles")
        return 3
    return 0
