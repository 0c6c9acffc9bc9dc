"""Operator endpoints: the blue/green database swap.

Guarded by the ``admin`` scope, which grants no campaign data. The work runs
in the projector's event loop; this handler is a plain ``def`` so the wait
happens in a worker thread and never blocks other requests.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api import docs
from api.deps import Caller, Context, RequestId
from api.envelope import ok
from api.errors import InsufficientScope, NotSwappable, SwapNotReady, SwapRefused
from api.keys import SCOPE_ADMIN
from api.models import Envelope, ErrorEnvelope
from projector.rebuild.errors import SwapError
from projector.rebuild.errors import SwapNotReady as NotStarted

router = APIRouter(tags=["admin"], prefix="/admin")


class SwapRequest(BaseModel):
    db: str = Field(
        min_length=1,
        max_length=4096,
        description="Path of the rebuilt DuckDB file, as the server sees it.",
    )


class SwapResult(BaseModel):
    db: str
    previous_db: str
    caught_up_events: int
    start_offsets: dict[str, int]
    offsets: dict[str, int]
    cleared_inconsistent: list[str] = Field(
        default_factory=list,
        description="Partitions (topic:partition) that were flagged inconsistent and that the "
        "rebuilt database repaired: their flags are cleared.",
    )
    seconds: float


def _error(description: str, code: str, message: str) -> dict:
    return {
        "model": ErrorEnvelope,
        "description": description,
        "content": {"application/json": {"example": docs._err(code, message)}},
    }


SWAP_RESPONSES: dict[int | str, dict] = {
    200: {"description": "Now serving the rebuilt database."},
    401: _error("Missing or invalid X-API-Key.", "UNAUTHORIZED", "Missing or invalid X-API-Key."),
    403: _error(
        "The key lacks the admin scope.",
        "INSUFFICIENT_SCOPE",
        "This API key lacks the admin scope.",
    ),
    409: _error(
        "Refused; the old database keeps serving.",
        "SWAP_REFUSED",
        "/data/new.duckdb does not exist (give the path as the server sees it)",
    ),
    422: _error("Invalid body.", "VALIDATION_ERROR", "body.db: Field required"),
    503: _error(
        "The projector is still starting; nothing changed. Retry after `Retry-After`.",
        "NOT_READY",
        "The projector is still starting; retry in a few seconds.",
    ),
    500: _error(
        "Server error.", "INTERNAL_ERROR", "Internal server error; safe to retry with backoff."
    ),
}


@router.post(
    "/swap",
    response_model=Envelope[SwapResult],
    responses=SWAP_RESPONSES,
    summary="Switch to a rebuilt database without failing requests",
    description=(
        "Catches the rebuilt database up from its stored offsets to the live position "
        "(to the log end for partitions flagged inconsistent, whose flags it clears), "
        "then serves from it; the old file is closed after a short grace period. "
        "Requires the `admin` scope. 409 SWAP_REFUSED leaves the old database serving."
    ),
)
def swap(body: SwapRequest, caller: Caller, ctx: Context, request_id: RequestId):  # noqa: ANN201
    if not caller.has(SCOPE_ADMIN):
        raise InsufficientScope(f"This API key lacks the {SCOPE_ADMIN} scope.")
    if ctx.admin is None:
        raise NotSwappable()
    try:
        return ok(ctx.admin.swap(body.db), request_id)
    except NotStarted as e:
        raise SwapNotReady() from e
    except SwapError as e:
        raise SwapRefused(str(e)) from e
