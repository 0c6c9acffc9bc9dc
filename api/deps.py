"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Protocol

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader

from api.cache import PositionCache
from api.errors import Unauthorized
from api.keys import KeyRing, Principal
from api.readstore import ReadStore
from projector.intake.feed import ChangeFeed
from projector.intake.health import PipelineSnapshot
from projector.intake.metrics import Metrics


class AdminOps(Protocol):
    def swap(self, db: str) -> dict[str, Any]:
        """Catch ``db`` up and serve from it; raises SwapError when refused."""
        ...


@dataclass(frozen=True)
class ApiContext:
    """Everything the routes read, set on ``app.state.ctx`` by ``create_app``."""

    reader: ReadStore
    keys: KeyRing
    status: Callable[[], PipelineSnapshot]
    metrics: Metrics
    feed: ChangeFeed | None = None  # flush notifications for streams; None: streams poll
    # Switches the live database (blue/green); None where there is nothing to swap.
    admin: AdminOps | None = None
    cache: PositionCache = field(default_factory=PositionCache)
    # Part of every ETag: positions restart with a rebuilt database, so a tag
    # from another server instance must never match (it costs one full answer).
    instance: str = field(default_factory=lambda: secrets.token_hex(4))


def replace_reader(app: Any, reader: ReadStore) -> None:
    """Serve from ``reader`` from the next request on.

    Positions (ETags, cached payloads) belong to a database: a new instance
    token and an empty payload cache make sure nothing from the old one is
    answered again. Requests in flight finish on the context they started with.
    """
    old: ApiContext = app.state.ctx
    app.state.ctx = replace(
        old, reader=reader, cache=PositionCache(), instance=secrets.token_hex(4)
    )


# The dependencies below are ``async def`` although they never await: FastAPI
# runs a plain ``def`` dependency in its thread pool, one thread hop each
# (measured: ~0.3 ms of CPU per hop; a status poll resolved four of them).


async def get_context(request: Request) -> ApiContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


Context = Annotated[ApiContext, Depends(get_context)]


async def get_reader(request: Request) -> ReadStore:
    return request.app.state.ctx.reader  # type: ignore[no-any-return]


Reader = Annotated[ReadStore, Depends(get_reader)]


async def get_request_id(request: Request) -> str:
    return request.state.request_id  # type: ignore[no-any-return]


RequestId = Annotated[str, Depends(get_request_id)]

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Workspace API key. Scopes: campaigns:read, analytics:read, pii:read.",
)


async def get_caller(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> Principal:
    principal = request.app.state.ctx.keys.lookup(key)
    if principal is None:
        raise Unauthorized()
    return principal


Caller = Annotated[Principal, Depends(get_caller)]

CampaignId = Annotated[str, Path(min_length=1, max_length=200, description="Campaign id.")]
RunId = Annotated[str, Path(min_length=1, max_length=200, description="Run id.")]
