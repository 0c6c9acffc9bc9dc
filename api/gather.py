"""``/v1/campaigns`` across nodes: each owner's part, merged into the one-node answer.

A workspace's campaigns are spread over the partitions, so over the nodes. The
node a client asks reads its own part, asks every other owner for theirs at
once, and merges them in the list's order (``campaign_id``) with the same
paging and total as one node over all events would give. A part is "the
campaigns of these partitions": the asking node names the partitions
(``X-Projection-Partitions``) from the one owner map it read, and a node
answers only for partitions it owns now, so a list never counts a campaign
twice or misses one while ownership moves (it answers 503 instead). A node's
database may still hold campaigns of partitions it owned before: they are
filtered out by partition, never by what the database holds.

A page ``offset, limit`` of the merge needs the first ``offset + limit``
campaigns of every part: deep pages cost every node that many rows. Why
scatter-gather and not a directory topic:
docs/decisions/0032-campaign-list-by-scatter-gather.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
from functools import lru_cache
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.answers import Reply, etag_matches, freshness_headers
from api.envelope import JSONResponse
from api.errors import PartitionUnavailable
from api.payloads import breakdowns as views_extra
from api.proxy import HOP_HEADER, Unreachable
from api.readstore import ReadStore
from api.routing import Owners, same_node
from schemas.partitioner import partition_of

PARTITIONS_HEADER = "X-Projection-Partitions"


@lru_cache(maxsize=100_000)
def _partition(campaign_id: str, partitions: int) -> int:
    # murmur2 in pure Python costs microseconds; a list reads every id of a workspace.
    return partition_of(campaign_id, partitions)


class Part:
    """One node's part of a list page: its first ``offset + limit`` campaigns, its total,
    and what the merged answer's headers are made of."""

    def __init__(
        self, items: list[dict[str, Any]], total: int, tag: str, watermark: str,
        lag: str | None,
    ) -> None:
        self.items, self.total, self.tag = items, total, tag
        self.watermark, self.lag = watermark, lag


def asked_partitions(reply: Reply, owners: Owners | None) -> frozenset[int] | None:
    """The partitions a forwarded list request asks this node for, or None when the
    request is a client's (answer the whole list).

    Raises ``PartitionUnavailable`` when this node does not own all of them now.
    """
    headers = reply.request.headers
    if owners is None or headers.get(HOP_HEADER) is None:
        return None
    try:
        asked = frozenset(int(p) for p in headers.get(PARTITIONS_HEADER, "").split(",") if p)
    except ValueError:
        asked = frozenset({-1})  # owned by no one: refused below
    for p in asked:
        owner = owners.owner_of(p)
        if owner is None or not same_node(owner, owners.url):
            reply.ctx.metrics.http_unroutable.labels("hop").inc()
            raise PartitionUnavailable()
    return asked


def read_part(
    reader: ReadStore, workspace_id: str, partitions: frozenset[int], count: int, first: int
) -> tuple[int, int, list[dict[str, Any]]]:
    """Position, total and first ``first`` campaign items of the workspace's campaigns on
    ``partitions`` (of ``count``), as ``list_campaigns`` shows them."""
    with reader.consistent():
        position = reader.flush_seq()
        ids = [c for c in reader.campaign_ids(workspace_id)
               if _partition(c, count) in partitions]
        campaigns = reader.campaigns_named(workspace_id, ids[:first])
        runs = reader.runs_of_many(workspace_id, [c.campaign_id for c in campaigns])
    items = [views_extra.campaign_item(c, runs.get(c.campaign_id, [])) for c in campaigns]
    return position, len(ids), items


def _owned_watermark(watermark: str, partitions: frozenset[int]) -> list[str]:
    """The ``topic:partition=offset`` entries of ``partitions``: a node's store may still
    hold offsets of partitions it owned before."""
    out = []
    for entry in watermark.split(","):
        _, sep, rest = entry.rpartition(":")
        partition, eq, _ = rest.partition("=")
        if sep and eq and partition.isdigit() and int(partition) in partitions:
            out.append(entry)
    return out


async def campaign_list(
    reply: Reply,
    owners: Owners,
    workspace_id: str,
    limit: int,
    offset: int,
) -> Response:
    """The list page of the whole cluster, asked of this node by a client."""
    everyone = owners.owners()
    if everyone is None:
        reply.ctx.metrics.http_unroutable.labels("unsettled").inc()
        raise PartitionUnavailable()
    by_node: dict[str, set[int]] = {}
    for p, url in everyone.items():
        by_node.setdefault(url.rstrip("/"), set()).add(p)
    me = owners.url.rstrip("/")
    ctx = reply.ctx
    request = reply.request

    async def local(partitions: frozenset[int]) -> Part:
        position, total, items = await run_in_threadpool(
            read_part, ctx.reader, workspace_id, partitions, owners.partitions, offset + limit
        )
        headers = freshness_headers(ctx.status())
        return Part(items, total, f"{ctx.instance}:{position}",
                    ",".join(_owned_watermark(headers["X-Projection-Watermark"], partitions)),
                    headers.get("X-Projection-Lag"))

    async def remote(url: str, partitions: frozenset[int]) -> Part:
        headers = {
            HOP_HEADER: owners.url,
            PARTITIONS_HEADER: ",".join(str(p) for p in sorted(partitions)),
            "X-Request-ID": reply.request_id,
        }
        key = request.headers.get("x-api-key")
        if key is not None:
            headers["X-API-Key"] = key
        answer = await ctx.proxy.get(
            f"{url}/v1/campaigns", {"limit": str(limit), "offset": str(offset)}, headers
        )
        ctx.metrics.http_proxied.labels("list_part").inc()
        try:
            if answer.status_code != 200:
                raise ValueError(answer.status_code)
            body = answer.json()
            items, total = list(body["data"]), int(body["meta"]["total"])
        except (ValueError, KeyError, TypeError) as e:
            # The node asked cannot answer for its partitions now (ownership moved,
            # rate limit, not ready): a merge without its part would be wrong.
            raise Unreachable(f"list part from {url}: {e!r}") from None
        return Part(items, total, answer.headers.get("ETag", ""),
                    ",".join(_owned_watermark(
                        answer.headers.get("X-Projection-Watermark", ""), partitions)),
                    answer.headers.get("X-Projection-Lag"))

    asks = [local(frozenset(ps)) if url == me else remote(url, frozenset(ps))
            for url, ps in sorted(by_node.items())]
    try:
        parts = await asyncio.gather(*asks)
    except PartitionUnavailable:
        ctx.metrics.http_unroutable.labels("unreachable").inc()
        raise
    return _merged(reply, parts, limit, offset)


def _merged(reply: Reply, parts: list[Part], limit: int, offset: int) -> Response:
    merged = heapq.merge(*(p.items for p in parts), key=lambda item: item["campaign_id"])
    items = list(merged)[offset : offset + limit]
    asked = f"{reply.request.url.path}?{reply.request.url.query}"
    tag = hashlib.blake2b(
        "|".join([reply.ctx.instance, asked, *(p.tag for p in parts)]).encode(), digest_size=12
    ).hexdigest()
    watermark = sorted({e for p in parts for e in p.watermark.split(",") if e})
    headers = {
        # Without stored offsets (a file served alone) this node's own position says most.
        "X-Projection-Watermark": ",".join(watermark) or freshness_headers(
            reply.ctx.status())["X-Projection-Watermark"],
        "ETag": f'W/"{tag}"',
        "Cache-Control": "no-cache",
    }
    lags = [p.lag for p in parts]
    if all(lag is not None and lag.isdigit() for lag in lags):
        headers["X-Projection-Lag"] = str(sum(int(lag) for lag in lags if lag is not None))
    if etag_matches(reply.if_none_match, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    body = {
        "success": True,
        "data": items,
        "meta": {"total": sum(p.total for p in parts), "limit": limit, "offset": offset},
        "errors": None,
        "request_id": reply.request_id,
    }
    return JSONResponse(body, headers=headers)
