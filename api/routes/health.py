"""Liveness, readiness and metrics: unauthenticated, no tenant data."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import PlainTextResponse, Response

from api.deps import Context, RequestId
from api.docs import RID
from api.envelope import fail, ok
from api.errors import NOT_READY
from api.models import Envelope, ErrorEnvelope, Health, Readiness

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
