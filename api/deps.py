"""Dependencies of the routes, as ``Annotated`` aliases.

The context, the caller and the request's id and ETag come one by one; a read
of one campaign comes as one bundle (``CampaignRead``), checked in a fixed
order: the key's scopes (403 INSUFFICIENT_SCOPE, reveals nothing), the
campaign's existence (404), its workspace (403 FORBIDDEN, no data). The route
then reads and answers (``api.answers``).
"""

# No ``from __future__ import annotations`` here: ``campaign_read_with`` builds its
# dependency in a closure, and FastAPI must see that closure's annotations as
# objects (``Depends(asked)``), not as strings to look up in this module.

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Generic, Protocol, TypeVar

from fastapi import Depends, Header, Path, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from api.answers import Reply
from api.cache import PositionCache
from api.errors import CampaignNotFound, Forbidden, InsufficientScope, RunNotFound, Unauthorized
from api.keys import SCOPE_ANALYTICS, SCOPE_CAMPAIGNS, KeyRing, Principal
from api.proxy import Proxy
from api.readstore import CampaignHead, Heads, ReadStore
from api.receipts import RECEIPT_WINDOW
from api.routing import Owners
from projector.fold.rows import CampaignKey, CampaignRow, RunRow
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
    # Several nodes: who owns which partition (None: one node, every partition here),
    # and the client that asks the other nodes.
    owners: Owners | None = None
    proxy: Proxy = field(default_factory=Proxy)
    cache: PositionCache = field(default_factory=PositionCache)
    # Sent recipients without a terminal report for longer than this, on the
    # campaign's event-time clock, are receipt_overdue (api.receipts).
    receipt_window: timedelta = RECEIPT_WINDOW
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


# The dependencies below are ``async def`` (most never await): FastAPI runs a
# plain ``def`` dependency in its thread pool, one thread hop each, and under
# ingestion every hop waits for the GIL
# (docs/decisions/0007-status-answered-from-memory.md).


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

IfNoneMatch = Annotated[
    str | None,
    Header(description="An ETag from an earlier response: 304 when nothing changed since."),
]


async def get_reply(request: Request, if_none_match: IfNoneMatch = None) -> Reply:
    # The context and request id straight from the request, not through two more
    # dependencies: a poll pays for every dependency on its path.
    return Reply(request.app.state.ctx, request, request.state.request_id, if_none_match)


ReplyTo = Annotated[Reply, Depends(get_reply)]


def require(caller: Principal, *scopes: str) -> None:
    for scope in scopes:
        if not caller.has(scope):
            raise InsufficientScope(f"This API key lacks the {scope} scope.")


def head_of(heads: Heads, caller: Principal, campaign_id: str) -> CampaignHead:
    """The caller's campaign among the workspaces' campaigns of one id (F12), else 403
    when only another workspace has one, else 404."""
    position = heads.get(caller.workspace_id)
    if position is None:
        raise Forbidden() if heads else CampaignNotFound()
    return CampaignHead(caller.workspace_id, campaign_id, position)


class Asked(Protocol):
    """What a route asks besides the campaign (its own path, query and header
    parameters), and the scopes these need beyond the route's (a CSV export:
    pii:read)."""

    @property
    def scopes(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class NothingElse:
    scopes: ClassVar[tuple[str, ...]] = ()


_NOTHING_ELSE = NothingElse()


A = TypeVar("A", bound=Asked)


@dataclass(frozen=True)
class CampaignRead(Generic[A]):
    """A read of the caller's campaign, checked: the key holds the scopes, and the
    campaign id names a campaign of the caller's workspace (``head``)."""

    caller: Principal
    head: CampaignHead
    reply: Reply
    asked: A
    # A poll beside the writer: the campaign's runs at ``head.position``, from the
    # same memory view as the head (``ReadStore.polled``). None otherwise.
    runs: list[RunRow] | None = None

    @property
    def reader(self) -> ReadStore:
        return self.reply.ctx.reader

    @property
    def key(self) -> CampaignKey:
        return self.head.key

    def campaign(self) -> CampaignRow:
        """The campaign's row; inside ``reader.consistent()``, of that read's state."""
        campaign = self.reader.campaign(self.key)
        if campaign is None:  # not in this read's snapshot
            raise CampaignNotFound()
        return campaign

    def position(self) -> int:
        """The campaign's position as DuckDB holds it; read it before the data it tags."""
        return self.reader.position(self.key)

    def run(self, run_id: str) -> RunRow:
        run = self.reader.run((*self.key, run_id))
        if run is None:
            raise RunNotFound()
        return run


async def _checked(
    scope: str, polled: bool, caller: Principal, campaign_id: str, reply: Reply, asked: A
) -> CampaignRead[A]:
    """The scopes (403 INSUFFICIENT_SCOPE), then the campaign (404, or 403 when only
    another workspace has the id), on the event loop.

    ``polled``: the status and analytics polls. Beside the writer their head and
    runs come from its memory, as of one flush and never mixed with DuckDB,
    which runs ahead of memory between a flush's COMMIT and the writer noting
    it (docs/reliability.md, guarantee 11): a campaign the writer has not noted
    yet is 404 until it is. Other reads ask DuckDB when memory does not show
    the caller's campaign, as they read their data there.
    """
    require(caller, scope, *asked.scopes)
    reader = reply.ctx.reader
    if polled and reader.beside_writer:
        heads, runs = reader.polled(caller.workspace_id, campaign_id)
        return CampaignRead(caller, head_of(heads, caller, campaign_id), reply, asked, runs)
    known = reader.known_heads(campaign_id)
    if known is None or (not polled and caller.workspace_id not in known):
        # One cheap query, off the event loop; over a file it is remembered.
        known = await run_in_threadpool(reader.stored_heads, campaign_id)
    return CampaignRead(caller, head_of(known, caller, campaign_id), reply, asked)


def campaign_read(
    scope: str, *, polled: bool = False
) -> Callable[..., Awaitable[CampaignRead[NothingElse]]]:
    """The dependency for a read of one campaign that needs ``scope`` and asks
    nothing else; ``polled`` for the status and analytics polls."""

    async def read(
        caller: Caller, reply: ReplyTo, campaign_id: CampaignId
    ) -> CampaignRead[NothingElse]:
        return await _checked(scope, polled, caller, campaign_id, reply, _NOTHING_ELSE)

    return read


async def get_campaign_id(campaign_id: CampaignId) -> str:
    return campaign_id


def campaign_read_with(
    scope: str, asked: Callable[..., Awaitable[A]]
) -> Callable[..., Awaitable[CampaignRead[A]]]:
    """The dependency for a read of one campaign that needs ``scope``, by a route
    with parameters of its own (``asked``, a dependency).

    They are validated before anything is checked, as FastAPI validates a
    route's own parameters before its body runs: a malformed request is a 422
    whatever the key's scopes and the campaign. The campaign id comes first,
    so the errors of a request with several bad parameters are named in path
    order, then query, then header, as FastAPI names them.
    """

    async def read(
        caller: Caller,
        campaign_id: Annotated[str, Depends(get_campaign_id)],
        more: Annotated[A, Depends(asked)],
        reply: ReplyTo,  # after ``more``: its header comes after theirs in the docs
    ) -> CampaignRead[A]:
        return await _checked(scope, False, caller, campaign_id, reply, more)

    return read


# The campaign reads that ask nothing else, by the scope they need.
StatusPoll = Annotated[
    CampaignRead[NothingElse], Depends(campaign_read(SCOPE_CAMPAIGNS, polled=True))
]
AnalyticsPoll = Annotated[
    CampaignRead[NothingElse], Depends(campaign_read(SCOPE_ANALYTICS, polled=True))
]
CampaignsRead = Annotated[CampaignRead[NothingElse], Depends(campaign_read(SCOPE_CAMPAIGNS))]
AnalyticsRead = Annotated[CampaignRead[NothingElse], Depends(campaign_read(SCOPE_ANALYTICS))]
