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

The first page is one round: every part's first ``limit`` campaigns, merged.
A later page takes two: every part's first ``offset + limit`` campaign ids
(``X-Projection-Ids``), merged to find which of each part's campaigns fall in
the page, then those campaigns in full, a page of each part. Should a part
change between the rounds (a campaign defined), the ids no longer match and
the gather starts again. Why scatter-gather and not a directory topic, and the
cost: docs/decisions/0032-campaign-list-by-scatter-gather.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.answers import Reply, etag_matches, freshness_headers
from api.envelope import paged
from api.errors import PartitionUnavailable
from api.payloads import breakdowns as views_extra
from api.proxy import HOP_HEADER, Unreachable
from api.readstore import ReadStore
from api.routing import Owners, same_node
from schemas.partitioner import partition_of

PARTITIONS_HEADER = "X-Projection-Partitions"
IDS_HEADER = "X-Projection-Ids"
# A part that keeps changing between the two rounds gets this many tries, then 503.
ATTEMPTS = 3


@lru_cache(maxsize=100_000)
def _partition(campaign_id: str, partitions: int) -> int:
    # murmur2 in pure Python costs microseconds; a list reads every id of a workspace.
    return partition_of(campaign_id, partitions)


@dataclass(frozen=True, slots=True)
class Part:
    """One node's answer for its partitions: total, campaigns (items or ids), and what
    the merged answer's headers are made of."""

    total: int
    data: list[Any]
    tag: str
    watermark: str
    lag: str | None


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
        asked = frozenset()
    if not asked or owners.partitions < 1:
        asked = frozenset({-1})  # a marked request must name partitions: refused below
    for p in asked:
        owner = owners.owner_of(p)
        if owner is None or not same_node(owner, owners.url):
            reply.ctx.metrics.http_unroutable.labels("hop").inc()
            raise PartitionUnavailable()
    return asked


def ids_asked(reply: Reply) -> int | None:
    """How many ids a gathering node asks for (``X-Projection-Ids``), or None for items."""
    named = reply.request.headers.get(IDS_HEADER)
    return int(named) if named is not None and named.isdigit() else None


def read_part(
    reader: ReadStore, workspace_id: str, partitions: frozenset[int], count: int,
    offset: int, limit: int, ids: int | None = None,
) -> tuple[int, int, list[Any]]:
    """Position, total and page of the workspace's campaigns on ``partitions`` (of
    ``count``): items as ``list_campaigns`` shows them, or with ``ids`` the first
    ``ids`` campaign ids."""
    with reader.consistent():
        position = reader.flush_seq()
        named = [c for c in reader.campaign_ids(workspace_id)
                 if _partition(c, count) in partitions]
        if ids is not None:
            return position, len(named), named[:ids]
        campaigns = reader.campaigns_named(workspace_id, named[offset : offset + limit])
        runs = reader.runs_of_many(workspace_id, [c.campaign_id for c in campaigns])
    items = [views_extra.campaign_item(c, runs.get(c.campaign_id, [])) for c in campaigns]
    return position, len(named), items


def _owned_watermark(watermark: str, partitions: frozenset[int]) -> str:
    """The ``topic:partition=offset`` entries of ``partitions``: a node's store may still
    hold offsets of partitions it owned before."""
    out = []
    for entry in watermark.split(","):
        _, sep, rest = entry.rpartition(":")
        partition, eq, _ = rest.partition("=")
        if sep and eq and partition.isdigit() and int(partition) in partitions:
            out.append(entry)
    return ",".join(out)


class _Gather:
    """One client's list request, asked of every owner."""

    def __init__(self, reply: Reply, owners: Owners, workspace_id: str,
                 by_node: dict[str, frozenset[int]]) -> None:
        self.reply, self.owners, self.workspace_id = reply, owners, workspace_id
        self.by_node = by_node
        self.me = owners.url.rstrip("/")

    async def parts(self, pages: dict[str, tuple[int, int]], ids: int | None) -> dict[str, Part]:
        """Each node's part: ``pages[node]`` is its (offset, limit); with ``ids``, ids only."""
        nodes = sorted(pages)
        got = await asyncio.gather(*(self._part(n, *pages[n], ids) for n in nodes))
        return dict(zip(nodes, got, strict=True))

    async def _part(self, node: str, offset: int, limit: int, ids: int | None) -> Part:
        partitions = self.by_node[node]
        ctx = self.reply.ctx
        if node == self.me:
            position, total, data = await run_in_threadpool(
                read_part, ctx.reader, self.workspace_id, partitions, self.owners.partitions,
                offset, limit, ids,
            )
            headers = freshness_headers(ctx.status())
            return Part(total, data, f"{ctx.instance}:{position}",
                        _owned_watermark(headers["X-Projection-Watermark"], partitions),
                        headers.get("X-Projection-Lag"))
        headers = {
            HOP_HEADER: self.owners.url,
            PARTITIONS_HEADER: ",".join(str(p) for p in sorted(partitions)),
            "X-Request-ID": self.reply.request_id,
        }
        if ids is not None:
            headers[IDS_HEADER] = str(ids)
        key = self.reply.request.headers.get("x-api-key")
        if key is not None:
            headers["X-API-Key"] = key
        answer = await ctx.proxy.get(
            f"{node}/v1/campaigns", {"limit": str(max(limit, 1)), "offset": str(offset)}, headers
        )
        ctx.metrics.http_proxied.labels("list_part").inc()
        try:
            if answer.status_code != 200:
                raise ValueError(answer.status_code)
            body = answer.json()
            data, total = list(body["data"]), int(body["meta"]["total"])
        except (ValueError, KeyError, TypeError) as e:
            # The node cannot answer for its partitions now (ownership moved, rate
            # limit, not ready): a merge without its part would be wrong.
            raise Unreachable(f"list part from {node}: {e!r}") from None
        return Part(total, data, answer.headers.get("ETag", ""),
                    _owned_watermark(answer.headers.get("X-Projection-Watermark", ""),
                                     partitions),
                    answer.headers.get("X-Projection-Lag"))


async def campaign_list(
    reply: Reply, owners: Owners, workspace_id: str, limit: int, offset: int
) -> Response:
    """The list page of the whole cluster, asked of this node by a client."""
    everyone = owners.owners()
    if everyone is None or owners.partitions < 1:
        reply.ctx.metrics.http_unroutable.labels("unsettled").inc()
        raise PartitionUnavailable()
    grouped: dict[str, set[int]] = {}
    for p, url in everyone.items():
        grouped.setdefault(url.rstrip("/"), set()).add(p)
    gather = _Gather(reply, owners, workspace_id,
                     {url: frozenset(ps) for url, ps in grouped.items()})
    try:
        for _ in range(ATTEMPTS):
            answer = await _page(gather, limit, offset)
            if answer is not None:
                return answer
    except PartitionUnavailable:
        reply.ctx.metrics.http_unroutable.labels("unreachable").inc()
        raise
    reply.ctx.metrics.http_unroutable.labels("changing").inc()
    raise PartitionUnavailable()


async def _page(gather: _Gather, limit: int, offset: int) -> Response | None:
    """The merged page, or None when a part changed between the two rounds."""
    nodes = sorted(gather.by_node)
    if offset == 0:
        parts = await gather.parts(dict.fromkeys(nodes, (0, limit)), None)
        merged = heapq.merge(*(p.data for p in parts.values()),
                             key=lambda item: item["campaign_id"])
        return _merged(gather.reply, list(parts.values()), list(merged)[:limit],
                       sum(p.total for p in parts.values()), limit, offset)
    heads = await gather.parts(dict.fromkeys(nodes, (0, 0)), offset + limit)
    # Which node each id of the page comes from: a contiguous run of each part.
    tagged = heapq.merge(*([(cid, n) for cid in heads[n].data] for n in nodes))
    chosen = list(tagged)[offset : offset + limit]
    pages: dict[str, tuple[int, int]] = {}
    for n in nodes:
        mine = [cid for cid, node in chosen if node == n]
        if mine:
            pages[n] = (heads[n].data.index(mine[0]), len(mine))
    bodies = await gather.parts(pages, None) if pages else {}
    items = heapq.merge(*(p.data for p in bodies.values()), key=lambda item: item["campaign_id"])
    page = list(items)
    if [item["campaign_id"] for item in page] != [cid for cid, _ in chosen] or any(
        bodies[n].total != heads[n].total for n in bodies
    ):
        return None
    return _merged(gather.reply, [*heads.values(), *bodies.values()], page,
                   sum(p.total for p in heads.values()), limit, offset)


def _merged(
    reply: Reply, parts: list[Part], items: list[dict[str, Any]], total: int, limit: int,
    offset: int,
) -> Response:
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
    return paged(items, total, limit, offset, reply.request_id, headers)
