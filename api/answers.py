"""How a read is answered: its ETag, a 304 when the client's tag is current, the
freshness headers, and payloads remembered per campaign position.

A caller reads the campaign's position before its data: an ETag (or a cached
payload) may then be older than the data (one extra full response) but never
newer, so a 304 never hides a change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from api.cache import PositionCache
from api.envelope import ok
from api.readstore import CampaignHead
from projector.intake.health import PipelineSnapshot

Payload = dict[str, Any]


class Answering(Protocol):
    """What an answer needs of the app's context (``api.deps.ApiContext`` is one):
    the server instance for ETags, the pipeline's status for freshness, the cache."""

    instance: str
    cache: PositionCache

    def status(self) -> PipelineSnapshot: ...


def etag(ctx: Answering, position: int, request: Request, variant: str = "") -> str:
    """Weak ETag: the campaign's flush position and what was asked (path and query).

    ``variant`` names what else the answer depends on (the caller's PII view,
    clock-dependent state), so a 304 never confirms another variant's body.
    """
    asked = f"{ctx.instance}:{request.url.path}?{request.url.query}".encode()
    if variant:
        asked += f"#{variant}".encode()
    return f'W/"{position}-{hashlib.blake2b(asked, digest_size=8).hexdigest()}"'


def etag_matches(header: str | None, tag: str) -> bool:
    if not header:
        return False
    opaque = tag[2:]
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


def freshness_headers(snap: PipelineSnapshot) -> dict[str, str]:
    headers = {"X-Projection-Watermark": snap.watermark or f"flush:{snap.flush_seq}"}
    lag = snap.lag
    if lag is not None:
        headers["X-Projection-Lag"] = str(lag)
    return headers


@dataclass(frozen=True, slots=True)
class Reply:
    """Where one request is answered: the app's context, what was asked, its id and
    the ETag the client holds (``If-None-Match``). ``api.deps`` builds it per request."""

    ctx: Answering
    request: Request
    request_id: str
    if_none_match: str | None

    def conditional(
        self, position: int, variant: str = ""
    ) -> tuple[dict[str, str], Response | None]:
        """Freshness and ETag headers, and the 304 to send when the client's tag is current."""
        headers = freshness_headers(self.ctx.status())
        headers["ETag"] = etag(self.ctx, position, self.request, variant)
        headers["Cache-Control"] = "no-cache"
        if etag_matches(self.if_none_match, headers["ETag"]):
            return headers, Response(status_code=304, headers=headers)
        return headers, None

    def answer(self, position: int, build: Callable[[], Payload], variant: str = "") -> Response:
        """304 when the client's ETag is current, else the payload; freshness headers on both.

        ``position`` must have been read before the data ``build`` reads.
        """
        headers, not_modified = self.conditional(position, variant)
        return not_modified or ok(build(), self.request_id, headers=headers)

    def remembered(self, key: tuple[Any, ...], position: int) -> Response | None:
        """The answer (304 or 200) of a payload remembered under ``key`` at exactly
        ``position``, or None when none is: it reads and builds nothing, so a route
        calls it on the event loop before it goes to DuckDB in the thread pool. Under
        ingestion each thread hop and each query waits for the GIL; a poll of an
        unchanged campaign then needs neither (docs/decisions/0038)."""
        payload = self.ctx.cache.peek(key, position)
        if payload is None:
            return None
        headers, not_modified = self.conditional(position)
        return not_modified or ok(payload, self.request_id, headers=headers)

    def cached(self, kind: str, head: CampaignHead, build: Callable[[], Payload]) -> Response:
        """``answer`` for payloads that depend on the campaign's rows alone: built once
        per campaign position (polls of an unchanged campaign cost no read)."""
        return self.answer(
            head.position,
            lambda: self.ctx.cache.get_or_build((kind, *head.key), head.position, build),
        )
