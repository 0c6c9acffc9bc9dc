"""Liveness, readiness, metrics and the cluster view: unauthenticated, no tenant data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import PlainTextResponse, Response

from api.deps import Context, RequestId
from api.docs import RID
from api.envelope import fail, ok
from api.errors import NOT_READY
from api.models import ClusterView, Envelope, ErrorEnvelope, Health, Readiness
from api.routing import Owners

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Liveness: the process serves HTTP",
    response_model=Envelope[Health],
    responses={200: {"content": {"application/json": {"example": {
        "success": True, "data": {"status": "ok"}, "errors": None, "request_id": RID}}}}},
)
def healthz(request_id: RequestId) -> Response:
    return ok({"status": "ok"}, request_id)


_READY = {"ready": True, "mode": "live", "flush_seq": 42, "lag": 0,
          "watermark": "campaign.runs:0=120,campaign.batches:0=340", "inconsistent": {},
          "last_error": None}


@router.get(
    "/readyz",
    summary="Readiness: caught up after start and no inconsistent partition",
    response_model=Envelope[Readiness],
    responses={
        200: {"content": {"application/json": {"example": {
            "success": True, "data": _READY, "errors": None, "request_id": RID}}}},
        503: {"model": ErrorEnvelope, "description": "Not ready; details in data.",
              "content": {"application/json": {"example": {
                  "success": False,
                  "data": {**_READY, "ready": False, "lag": 18000},
                  "errors": [{"code": NOT_READY, "message": "Catching up: 18000 records behind."}],
                  "request_id": RID}}}},
    },
)
def readyz(ctx: Context, request_id: RequestId) -> Response:
    snap = ctx.status()
    details = {
        "ready": snap.ready and not snap.inconsistent,
        "mode": snap.mode,
        "flush_seq": snap.flush_seq,
        "lag": snap.lag,
        "watermark": snap.watermark,
        "inconsistent": {
            f"{t}:{p}": reason for (t, p), reason in sorted(snap.inconsistent.items())
        },
        # Why the lag is unknown or the flushes stall (broker down, disk full).
        "last_error": snap.last_error,
    }
    if ctx.owners is not None:
        details["cluster"] = node_partitions(ctx.owners, snap.log_end, snap.offsets)
    if details["ready"]:
        return ok(details, request_id)
    if snap.inconsistent:
        message = "Some partitions no longer hold the stored offsets; a replay is needed."
    elif snap.lag is not None:
        message = f"Catching up: {snap.lag} records behind."
    else:
        message = "Not caught up yet."
    return fail(503, NOT_READY, message, request_id, data=details)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(ctx: Context) -> Response:
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def node_partitions(
    owners: Owners, log_end: dict[tuple[str, int], int], offsets: dict[tuple[str, int], int]
) -> dict[str, Any]:
    """This node's share of the group, from the ``api.routing.Owners`` it was given."""
    url = owners.url
    settled = owners.owners() is not None
    # Restoring partitions are this node's but name no owner until caught up.
    restoring = sorted(owners.restoring)
    owned = sorted(
        {p for p in range(owners.partitions) if owners.owner_of(p) == url} | set(restoring)
    )
    lag: dict[str, int] = {}
    # log_end holds the partitions the pipeline reads: this node's own.
    for (topic, partition), end in sorted(log_end.items()):
        behind = max(0, end - offsets.get((topic, partition), 0))
        lag[str(partition)] = lag.get(str(partition), 0) + behind
    if settled:
        lag = {p: n for p, n in lag.items() if int(p) in owned}
    # Records each still lacks of its last owner's offsets (-1: waiting for its shard's file).
    to_go = {str(p): n for p, n in sorted(owners.restore_remaining.items())}
    # Paused past the group's session: answering for nothing until reassigned.
    return {
        "url": url, "settled": settled, "owned": owned, "restoring": restoring,
        "restore_remaining": to_go, "lag": lag,
        "lease_lost": owners.lease_lost(),
    }  # fmt: skip


@router.get(
    "/v1/cluster",
    summary="The group of nodes: every partition's owner, as this node sees it",
    response_model=Envelope[ClusterView],
    responses={200: {"content": {"application/json": {"example": {
        "success": True,
        "data": {"url": "http://10.0.0.5:8000", "partitions": 2, "settled": True,
                 "owners": {"0": "http://10.0.0.5:8000", "1": "http://10.0.0.6:8000"}},
        "errors": None, "request_id": RID}}}}},
)
def cluster(ctx: Context, request_id: RequestId) -> Response:
    owners = ctx.owners
    if owners is None:
        view: dict[str, Any] = {"url": None, "partitions": None, "settled": True, "owners": {}}
        return ok(view, request_id)
    every = owners.owners()
    if every is None:  # rebalancing: name only what is known (nothing, while unsettled)
        every = {p: owners.owner_of(p) for p in range(owners.partitions)}
    view = {
        "url": owners.url,
        "partitions": owners.partitions,
        "settled": all(url is not None for url in every.values()),
        "owners": {str(p): url for p, url in sorted(every.items())},
    }
    return ok(view, request_id)
