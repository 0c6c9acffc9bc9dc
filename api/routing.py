"""Where a request goes when several nodes share the partitions: here, another node, or nowhere.

A campaign lives on one partition (``schemas.partitioner``), and a partition's
projections on the node that owns it now. ``Owners`` says who that is; the
membership (``projector.intake.membership``) implements it without importing
the api, and ``service.serve`` hands one to ``create_app(owners=...)``. Without
one (a single node) every partition is local.

``RoutingMiddleware`` answers every request naming a campaign
(``/v1/campaign/{id}/...``, ``/campaigns/{id}/status``) here when this node
owns the campaign's partition, forwards it to the owner otherwise
(``api.proxy``), and answers 503 with ``Retry-After`` when no owner can answer:
ownership unsettled, owner unreachable, or a forwarded request reaching a node
that does not own the partition (it is never forwarded twice). The campaign
list is gathered from every owner (``api.gather``). Why a middleware:
docs/decisions/0031-routing-as-asgi-middleware.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Protocol, runtime_checkable
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from api.envelope import fail, request_id_from
from api.errors import PartitionUnavailable
from api.proxy import HOP_HEADER, Proxy, Unreachable
from projector.intake.metrics import Metrics
from schemas.partitioner import partition_of

_HOP = HOP_HEADER.lower().encode()
# The routes that name a campaign. Matched on the raw path, so an encoded slash
# stays in the id (the owner answers 404 for it, as any node would).
_CAMPAIGN_PATH = re.compile(r"^/(?:v1/campaign/([^/]+)/.*|campaigns/([^/]+)/status)$")


@runtime_checkable
class Owners(Protocol):
    """Who owns which partition of the four source topics, as this node sees it now."""

    @property
    def url(self) -> str:
        """This node's advertised base URL, e.g. ``http://10.0.0.5:8000``."""
        ...

    @property
    def partitions(self) -> int:
        """The partition count of the four source topics."""
        ...

    def owner_of(self, partition: int) -> str | None:
        """The owner's advertised URL; None while unsettled (rebalance or restore
        running, not joined)."""
        ...

    def owners(self) -> dict[int, str] | None:
        """Every partition's owner; None while any partition is unsettled."""
        ...

    @property
    def restoring(self) -> frozenset[int]:
        """Partitions owned here that still catch up to their last owner (no owner yet)."""
        ...

    @property
    def restore_remaining(self) -> dict[int, int]:
        """Per restoring partition, the records it still lacks (-1: waiting for its file)."""
        ...

    def lease_lost(self) -> str | None:
        """Why this node may not answer for its partitions now (paused past the group's
        session); None if it may."""
        ...


@dataclass
class StaticOwners:
    """``Owners`` from a fixed table: a placement set by hand, without a group (the
    in-process cluster tests, ``bench.cluster_list``). ``table`` maps a partition
    to its owner's URL, or to None while it has none; nothing restores here."""

    url: str
    partitions: int
    table: dict[int, str | None] = field(default_factory=dict)
    restoring: frozenset[int] = frozenset()
    restore_remaining: dict[int, int] = field(default_factory=dict)

    def owner_of(self, partition: int) -> str | None:
        return self.table.get(partition)

    def owners(self) -> dict[int, str] | None:
        if len(self.table) < self.partitions or None in self.table.values():
            return None
        return {p: u for p, u in self.table.items() if u is not None}

    def lease_lost(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class Local:
    """Answer here."""


@dataclass(frozen=True, slots=True)
class Remote:
    """Forward to the owner at ``url``."""

    url: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Answer 503: ``reason`` is ``unsettled`` or ``hop`` (a forwarded request for a
    partition this node does not own)."""

    reason: str


Route = Local | Remote | Unavailable
LOCAL = Local()


def same_node(a: str, b: str) -> bool:
    """Two advertised URLs name the same node (a trailing slash aside)."""
    return a.rstrip("/") == b.rstrip("/")


def campaign_in_path(raw_path: bytes) -> str | None:
    """The campaign a request path names, or None for the other routes."""
    m = _CAMPAIGN_PATH.match(raw_path.decode("latin-1"))
    if m is None:
        return None
    return unquote(m.group(1) or m.group(2))


def route_of(owners: Owners | None, campaign_id: str, hop: str | None) -> Route:
    """Where a request for ``campaign_id`` goes; ``hop`` is the forwarding node's URL,
    if the request was forwarded."""
    if owners is None:
        return LOCAL
    if owners.partitions < 1:  # not joined yet: the partition count is not known
        return Unavailable("unsettled")
    owner = owners.owner_of(partition_of(campaign_id, owners.partitions))
    if owner is None:
        return Unavailable("unsettled")
    if same_node(owner, owners.url):
        return LOCAL
    if hop is not None:
        # The forwarding node thought this one owned it: ownership is moving.
        # Forwarding again could loop between two nodes with different views.
        return Unavailable("hop")
    return Remote(owner)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def request_id_of(scope: Scope) -> str:
    state = scope.get("state") or {}
    rid = state.get("request_id") if isinstance(state, dict) else None
    return rid if isinstance(rid, str) else request_id_from(None)


async def unavailable(
    scope: Scope, receive: Receive, send: Send, metrics: Metrics, reason: str
) -> None:
    """503 in the usual envelope, with ``Retry-After``: no owner can answer now."""
    metrics.http_unroutable.labels(reason).inc()
    err = PartitionUnavailable()
    response = fail(
        err.status, err.code, err.client_message, request_id_of(scope), headers=err.headers
    )
    await response(scope, receive, send)


_FORWARDED = SimpleNamespace(path="(forwarded)")
_UNROUTABLE = SimpleNamespace(path="(unroutable)")


class RoutingMiddleware:
    """Campaign requests to the partition's owner (plain ASGI, like the other middleware)."""

    def __init__(self, app: ASGIApp, *, owners: Owners, proxy: Proxy, metrics: Metrics) -> None:
        self.app = app
        self.owners = owners
        self.proxy = proxy
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        campaign_id = campaign_in_path(raw_path)
        if campaign_id is None:
            await self.app(scope, receive, send)
            return
        route = route_of(self.owners, campaign_id, header(scope, _HOP))
        if isinstance(route, Local):
            await self.app(scope, receive, send)
            return
        # Timed under its own name in the latency metrics (no route of this app ran).
        scope["route"] = _FORWARDED if isinstance(route, Remote) else _UNROUTABLE
        if isinstance(route, Remote):
            try:
                await self.proxy.forward(route.url, self.owners.url, scope, receive, send)
                self.metrics.http_proxied.labels("campaign").inc()
            except Unreachable:
                await unavailable(scope, receive, send, self.metrics, "unreachable")
        else:
            await unavailable(scope, receive, send, self.metrics, route.reason)
