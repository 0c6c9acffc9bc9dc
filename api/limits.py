"""Request-size and rate limits: an ASGI middleware in front of every route.

Size limits (checked first, before any key is hashed or any route runs):

- URL (path and query) over ``max_url_bytes``: 414 ``URI_TOO_LONG``;
- headers over ``max_header_bytes`` in total: 431 ``HEADERS_TOO_LARGE``;
- a body over ``max_body_bytes``: 413 ``PAYLOAD_TOO_LARGE``, from its
  ``Content-Length`` up front or, for a chunked body, as soon as a route reads
  past the limit.

Rate limits are token buckets: a valid API key gets ``rate`` requests per
second with bursts of ``burst``; requests without a valid key (missing or
unknown) share one bucket per client address (``anon_rate``/``anon_burst``),
so guessing keys is limited too and a flood of made-up keys cannot create
buckets. The key is read from ``X-API-Key`` or, for the event stream whose
browser client cannot send headers, from ``?api_key=``. Over the limit the
answer is 429 ``RATE_LIMITED`` with ``Retry-After`` (whole seconds until a
token is back). ``/healthz``, ``/readyz``, ``/metrics`` and ``/v1/cluster`` are never rate
limited (probes and scrapers must not be starved by clients).

Memory is bounded: at most ``max_buckets`` buckets are kept (least recently
used first out), and a bucket idle long enough to be full again is dropped
(forgetting it changes nothing). Buckets are keyed by the key's SHA-256, never
the key; nothing here logs a key.

Every rejection uses the standard error envelope; placed inside
``RequestContextMiddleware`` it carries the request id and is counted in the
latency metrics under its status.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.envelope import fail, request_id_from
from api.keys import KeyRing, digest
from projector.settings import Settings

log = logging.getLogger(__name__)

RATE_LIMITED = "RATE_LIMITED"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
URI_TOO_LONG = "URI_TOO_LONG"
HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"

HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/cluster"})


@dataclass(frozen=True)
class Limits:
    """The API's limits; ``create_app(limits=...)``. A rate of 0 turns rate limiting off."""

    rate: float = 50.0  # requests per second per API key
    burst: int = 100
    anon_rate: float = 20.0  # requests per second per client address without a valid key
    anon_burst: int = 100
    max_body_bytes: int = 64 * 1024
    max_url_bytes: int = 8 * 1024
    max_header_bytes: int = 16 * 1024
    max_buckets: int = 50_000
    exempt_paths: frozenset[str] = field(default=HEALTH_PATHS)

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits an operator set (``PROJECTOR_RATE_LIMIT`` and friends)."""
        return cls(
            rate=settings.rate_limit,
            burst=settings.rate_burst,
            anon_rate=settings.anon_rate_limit,
            anon_burst=settings.anon_rate_burst,
            max_body_bytes=settings.max_body_bytes,
        )

    def __post_init__(self) -> None:
        for name in ("rate", "anon_rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"Limits.{name} must be >= 0")
        for name in ("burst", "anon_burst", "max_body_bytes", "max_url_bytes",
                     "max_header_bytes", "max_buckets"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be >= 1")


class _Bucket:
    __slots__ = ("tokens", "stamp", "full_after")

    def __init__(self, burst: int, now: float, full_after: float) -> None:
        self.tokens = float(burst)
        self.stamp = now
        self.full_after = full_after  # seconds of idleness after which it is full again


class RateLimiter:
    """Token buckets by caller, bounded in number. Used from one event loop (no awaits inside)."""

    def __init__(self, max_buckets: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, who: Hashable, rate: float, burst: int) -> float:
        """Spend one token of ``who``'s bucket: 0.0 if allowed, else seconds until one is back."""
        now = self._clock()
        self._sweep(now)
        bucket = self._buckets.get(who)
        if bucket is None:
            bucket = _Bucket(burst, now, burst / rate)
            self._buckets[who] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(who)
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def _sweep(self, now: float, at_most: int = 8) -> None:
        """Drop the least recently used buckets that are full again (a few per call)."""
        buckets = self._buckets
        for _ in range(at_most):
            if not buckets:
                return
            who, oldest = next(iter(buckets.items()))
            if now - oldest.stamp < oldest.full_after:
                return
            del buckets[who]


def _query_key(query_string: bytes) -> bytes | None:
    for value in parse_qs(query_string.decode("latin-1"), max_num_fields=50).get("api_key", ()):
        return value.encode("latin-1")
    return None


class _BodyTooLarge(Exception):
    pass


class LimitsMiddleware:
    """Size limits, then rate limits, then the app (plain ASGI, like RequestContextMiddleware)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyRing,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.keys = keys
        self.limits = limits or Limits()
        self.limiter = RateLimiter(self.limits.max_buckets, clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lim = self.limits
        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(
            scope.get("query_string", b"")
        )
        if url_bytes > lim.max_url_bytes:
            await self._reject(scope, receive, send, 414, URI_TOO_LONG,
                               f"The URL is longer than {lim.max_url_bytes} bytes.")
            return
        header_bytes = 0
        content_length: bytes | None = None
        presented: bytes | None = None
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value) + 4
            if name == b"content-length":
                content_length = value
            elif name == b"x-api-key":
                presented = value
        if header_bytes > lim.max_header_bytes:
            await self._reject(scope, receive, send, 431, HEADERS_TOO_LARGE,
                               f"The request headers are larger than {lim.max_header_bytes} bytes.")
            return

        if scope["path"] not in lim.exempt_paths:
            if presented is None and b"api_key=" in scope.get("query_string", b""):
                presented = _query_key(scope["query_string"])  # EventSource cannot send headers
            wait = self._spend(scope, presented)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                await self._reject(scope, receive, send, 429, RATE_LIMITED,
                                   f"Too many requests; retry after {retry} s.",
                                   headers={"Retry-After": str(retry)})
                return

        if content_length is not None:
            try:
                declared = int(content_length)
            except ValueError:
                declared = lim.max_body_bytes + 1  # unparseable: treat as too large
            if declared > lim.max_body_bytes:
                await self._reject(scope, receive, send, 413, PAYLOAD_TOO_LARGE,
                                   f"The request body is larger than {lim.max_body_bytes} bytes.")
                return
        await self._call_counting_body(scope, receive, send)

    def _spend(self, scope: Scope, presented: bytes | None) -> float:
        lim = self.limits
        who: Hashable | None = None
        if presented:
            key = presented.decode("latin-1")
            if self.keys.lookup(key) is not None:
                if lim.rate <= 0:
                    return 0.0
                return self.limiter.take(("key", digest(key)), lim.rate, lim.burst)
        if lim.anon_rate <= 0:
            return 0.0
        client = scope.get("client")
        who = ("addr", client[0] if client else "unknown")
        return self.limiter.take(who, lim.anon_rate, lim.anon_burst)

    async def _call_counting_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, with a receive that stops a chunked body at the size limit."""
        limit = self.limits.max_body_bytes
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._reject(scope, receive, send, 413, PAYLOAD_TOO_LARGE,
                               f"The request body is larger than {limit} bytes.")

    @staticmethod
    async def _reject(
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        state = scope.get("state") or {}
        rid = state.get("request_id") if isinstance(state, dict) else None
        if not isinstance(rid, str):
            rid = request_id_from(None)
        client = scope.get("client")
        log.debug("rejected %s %r from %s: %d %s", scope["method"], scope["path"][:200],
                  client[0] if client else "?", status, code)
        response = fail(status, code, message, rid, headers=headers)
        await response(scope, receive, send)
