"""``GET /v1/campaign/{id}/stream``: the status payload pushed as server-sent events.

Auth, scope and existence are checked like status (401, 403, 404 as JSON,
before any byte of the stream). Then the stream sends

- ``event: status`` with ``id:`` the campaign's position (the flush that last
  changed it) and ``data:`` exactly the status endpoint's ``data``, at once
  (skipped when ``Last-Event-ID`` already equals the position) and again each
  time a flush changes the campaign, at most ``min_interval`` apart;
- a ``: ping`` comment when nothing was sent for ``heartbeat`` seconds;
- ``event: end`` once the latest run is terminal and its payload was sent,
  then the response ends. A client reconnecting with the final position as
  ``Last-Event-ID`` gets ``204`` (EventSource stops reconnecting on 204).

Memory per client is constant: the change feed's subscription keeps only the
latest flush sequence, one payload is in flight at a time, and a client that
cannot take a chunk within ``send_timeout`` seconds is dropped. Without a
feed (``projector api`` over a file) the position is polled every
``poll_interval`` seconds instead.

The key comes from ``X-API-Key``; since a browser's ``EventSource`` cannot
send headers, this endpoint alone also accepts ``?api_key=``. Query strings
are never logged (no access log; metrics and errors name the route template).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.deps import ApiContext, CampaignId, Context
from api.errors import CampaignNotFound, Forbidden, InsufficientScope, Unauthorized
from api.keys import SCOPE_CAMPAIGNS
from projector import views

log = logging.getLogger(__name__)

router = APIRouter(tags=["stream"])

TERMINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class StreamSettings:
    """Timings of the stream; tests set shorter ones on ``app.state.stream_settings``."""

    heartbeat: float = 15.0  # seconds of silence before a ": ping" comment
    min_interval: float = 0.25  # at most 4 payloads per second per client
    send_timeout: float = 10.0  # a client that cannot take a chunk in this long is dropped
    poll_interval: float = 1.0  # position polling when the app has no change feed
    retry_ms: int = 2000  # reconnection delay advised to EventSource


def settings_of(request: Request) -> StreamSettings:
    s = getattr(request.app.state, "stream_settings", None)
    return s if isinstance(s, StreamSettings) else StreamSettings()


def status_event(position: int, payload: dict[str, Any]) -> bytes:
    return b"event: status\nid: %d\ndata: %s\n\n" % (position, orjson.dumps(payload))


END_EVENT = b'event: end\ndata: {"reason":"terminal"}\n\n'
PING = b": ping\n\n"


def is_terminal(payload: dict[str, Any]) -> bool:
    return payload.get("status") in TERMINAL


def read_status(ctx: ApiContext, campaign_id: str) -> tuple[int, dict[str, Any]] | None:
    """(position, status payload); the position is read first (see api.routes.campaigns)."""
    reader = ctx.reader
    head = reader.campaign_head(campaign_id)
    if head is None:
        return None
    payload = ctx.cache.get_or_build(
        ("status", campaign_id),
        head.position,
        lambda: views.status_payload(campaign_id, views.latest_run(reader.runs_of(campaign_id))),
    )
    return head.position, payload


async def _read(ctx: ApiContext, campaign_id: str) -> tuple[int, dict[str, Any]] | None:
    # DuckDB calls block: run them on the thread pool (one cursor per thread).
    return await anyio.to_thread.run_sync(read_status, ctx, campaign_id)


async def status_events(
    ctx: ApiContext,
    campaign_id: str,
    first: tuple[int, dict[str, Any]],
    last_event_id: str | None,
    settings: StreamSettings,
    sub: Any,
) -> AsyncIterator[bytes]:
    """The chunks of one stream; ``first`` was read after ``sub`` subscribed."""
    position, payload = first
    yield b"retry: %d\n\n" % settings.retry_ms
    last_io = time.monotonic()
    last_send = 0.0
    if last_event_id != str(position):
        yield status_event(position, payload)
        last_send = last_io = time.monotonic()
    if is_terminal(payload):
        yield END_EVENT
        return
    while True:
        until_ping = max(0.0, last_io + settings.heartbeat - time.monotonic())
        if sub is not None:
            changed = await sub.wait(until_ping) and sub.latest_seq > position
        else:
            await asyncio.sleep(min(settings.poll_interval, until_ping))
            changed = True  # cheap to check: one small query, payloads are cached
        if changed:
            delay = last_send + settings.min_interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # coalesce: later flushes fold into this read
            current = await _read(ctx, campaign_id)
            if current is None:  # the database was swapped under us: nothing more to say
                return
            if current[0] != position:
                position, payload = current
                yield status_event(position, payload)
                last_send = last_io = time.monotonic()
                if is_terminal(payload):
                    yield END_EVENT
                    return
        if time.monotonic() - last_io >= settings.heartbeat:
            yield PING
            last_io = time.monotonic()


class EventStreamResponse(Response):
    """Sends chunks with a deadline each; stops on client disconnect or a slow client."""

    media_type = "text/event-stream"

    def __init__(
        self, chunks: AsyncIterator[bytes], send_timeout: float, on_close: Any = None
    ) -> None:
        super().__init__(
            status_code=200,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            media_type=self.media_type,
        )
        # A stream has no length: drop the "content-length: 0" of the empty body.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.chunks = chunks
        self.send_timeout = send_timeout
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_disconnect)
                with anyio.fail_after(self.send_timeout):
                    await send({"type": "http.response.start", "status": self.status_code,
                                "headers": self.raw_headers})
                async for chunk in self.chunks:
                    with anyio.fail_after(self.send_timeout):
                        await send({"type": "http.response.body", "body": chunk,
                                    "more_body": True})
                with anyio.fail_after(self.send_timeout):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        except* TimeoutError:
            log.warning("dropped a stream client that took no data for %.0fs", self.send_timeout)
        finally:
            await _aclose(self.chunks)
            if self.on_close is not None:
                self.on_close()


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


@router.get(
    "/v1/campaign/{campaign_id}/stream",
    include_in_schema=False,  # documented in docs/api.md: OpenAPI cannot describe a stream
)
async def campaign_stream(
    campaign_id: CampaignId,
    request: Request,
    ctx: Context,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
    api_key: Annotated[str | None, Query(max_length=500)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=40)] = None,
) -> Response:
    caller = ctx.keys.lookup(x_api_key if x_api_key is not None else api_key)
    if caller is None:
        raise Unauthorized()
    if not caller.has(SCOPE_CAMPAIGNS):
        raise InsufficientScope(f"This API key lacks the {SCOPE_CAMPAIGNS} scope.")
    head = await anyio.to_thread.run_sync(ctx.reader.campaign_head, campaign_id)
    if head is None:
        raise CampaignNotFound()
    if head.workspace_id != caller.workspace_id:
        raise Forbidden()

    settings = settings_of(request)
    # Subscribe before the first read: a flush in between wakes the loop, never is lost.
    sub = ctx.feed.subscribe(campaign_id) if ctx.feed is not None else None
    try:
        first = await _read(ctx, campaign_id)
    except BaseException:
        if sub is not None:
            sub.close()
        raise
    if first is None:
        if sub is not None:
            sub.close()
        raise CampaignNotFound()
    if last_event_id == str(first[0]) and is_terminal(first[1]):
        # The client holds the final payload: 204 tells EventSource not to reconnect.
        if sub is not None:
            sub.close()
        return Response(status_code=204, headers={"Cache-Control": "no-cache"})
    chunks = status_events(ctx, campaign_id, first, last_event_id, settings, sub)
    return EventStreamResponse(
        chunks, settings.send_timeout, on_close=sub.close if sub is not None else None
    )
