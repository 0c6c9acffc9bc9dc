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

All streams of one campaign share a ``Hub``: one change-feed subscription
(which keeps only the latest flush sequence), one read and one encoding per
change, however many clients. Memory per client is constant: an event, the
position it last sent and one chunk in flight; a client that cannot take a
chunk within ``send_timeout`` seconds is dropped, and one that fell behind
skips to the newest payload. Without a feed (``projector api`` over a file)
the hub polls the position every ``poll_interval`` seconds instead.

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
from starlette.types import Message, Receive, Scope, Send

from api.deps import ApiContext, CampaignId, Context, head_of, require
from api.errors import CampaignNotFound, Unauthorized
from api.keys import SCOPE_CAMPAIGNS
from api.payloads import campaign as views
from api.receipts import overdue_of
from projector.fold.rows import CampaignKey

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


def read_status(ctx: ApiContext, campaign: CampaignKey) -> tuple[int, dict[str, Any]] | None:
    """(position, status payload), both from one committed state.

    An event's ``id`` must name exactly the flush its data comes from
    (``Last-Event-ID`` relies on it), so position and runs are read in one
    read transaction, not from the writer's in-memory heads or the shared
    payload cache: those may run one flush ahead of each other for a moment.
    One read per change per campaign, shared by all its clients.
    """
    reader = ctx.reader
    if campaign[0] not in reader.campaign_heads(campaign[1]):
        return None
    with reader.consistent():
        position = reader.position(campaign)
        runs = reader.runs_of(campaign)
        overdue = overdue_of(reader, campaign, runs, ctx.receipt_window)
    run = views.latest_run(runs)
    return position, views.status_payload(
        campaign[1], run, overdue.get(run.run_id, 0) if run is not None else 0
    )


async def _read(ctx: ApiContext, campaign: CampaignKey) -> tuple[int, dict[str, Any]] | None:
    # DuckDB calls block: run them on the thread pool (one cursor per thread).
    return await anyio.to_thread.run_sync(read_status, ctx, campaign)


class Hub:
    """The streams of one campaign share one subscription, one read per change, one encoding.

    A hub lives while it has clients. Its task waits on the change feed (or
    polls without one), reads the status at most every ``min_interval``
    seconds, and wakes its clients; each client holds only its own event and
    the position it last sent (constant memory), and takes the hub's latest
    chunk when it wakes, so a client that fell behind skips to the newest.
    """

    def __init__(self, hubs: dict[CampaignKey, Hub], ctx: ApiContext, campaign: CampaignKey,
                 settings: StreamSettings) -> None:
        self.hubs, self.ctx, self.campaign, self.settings = hubs, ctx, campaign, settings
        self.sub = ctx.feed.subscribe(campaign) if ctx.feed is not None else None
        self.clients: set[asyncio.Event] = set()
        self.ready = asyncio.Event()
        self.failed: BaseException | None = None
        self.position = -1
        self.payload: dict[str, Any] = {}
        self.chunk = b""
        self.missing = False  # the campaign is not (or no longer) in the database
        hubs[campaign] = self
        self.task = asyncio.get_running_loop().create_task(self._run())

    def _set(self, current: tuple[int, dict[str, Any]] | None) -> bool:
        if current is None:
            self.missing = True
            return True
        if current[0] == self.position:
            return False
        self.position, self.payload = current
        self.chunk = status_event(*current)
        return True

    async def _run(self) -> None:
        settings = self.settings
        try:
            self._set(await _read(self.ctx, self.campaign))
            self.ready.set()
            last_read = time.monotonic()
            while not self.missing and not is_terminal(self.payload):
                if self.sub is not None:
                    if not await self.sub.wait(settings.heartbeat):
                        continue
                    if self.sub.latest_seq <= self.position:
                        continue
                else:
                    await asyncio.sleep(settings.poll_interval)
                delay = last_read + settings.min_interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # coalesce: later flushes fold into this read
                changed = self._set(await _read(self.ctx, self.campaign))
                last_read = time.monotonic()
                if changed:
                    for ev in self.clients:
                        ev.set()
        except Exception as e:  # a read failed: end every stream of the campaign
            log.warning("stream of a campaign stopped: %s", e)
            self.failed = e
            self.ready.set()
            for ev in self.clients:
                ev.set()

    def join(self) -> asyncio.Event:
        ev = asyncio.Event()
        self.clients.add(ev)
        return ev

    def leave(self, ev: asyncio.Event) -> None:
        self.clients.discard(ev)
        if not self.clients:
            self.close()

    def close(self) -> None:
        if self.hubs.get(self.campaign) is self:
            del self.hubs[self.campaign]
        self.task.cancel()
        if self.sub is not None:
            self.sub.close()


def hub_for(request: Request, ctx: ApiContext, campaign: CampaignKey) -> Hub:
    hubs: dict[CampaignKey, Hub] | None = getattr(request.app.state, "stream_hubs", None)
    if hubs is None:
        hubs = {}
        request.app.state.stream_hubs = hubs
    hub = hubs.get(campaign)
    if hub is None or hub.failed is not None or hub.missing:
        hub = Hub(hubs, ctx, campaign, settings_of(request))
    return hub


async def status_events(
    hub: Hub, ev: asyncio.Event, last_event_id: str | None, settings: StreamSettings
) -> AsyncIterator[bytes]:
    """The chunks of one stream, taken from the campaign's hub."""
    loop = asyncio.get_running_loop()
    position = hub.position
    yield b"retry: %d\n\n" % settings.retry_ms
    last_io = time.monotonic()
    if last_event_id != str(position):
        yield hub.chunk
        last_io = time.monotonic()
    if is_terminal(hub.payload):
        yield END_EVENT
        return
    while True:
        until_ping = max(0.0, last_io + settings.heartbeat - time.monotonic())
        timer = loop.call_later(until_ping, ev.set)  # a timer handle, not a task per wait
        try:
            await ev.wait()
        finally:
            timer.cancel()
        ev.clear()
        if hub.failed is not None or hub.missing:
            return
        if hub.position != position:
            position = hub.position
            yield hub.chunk
            last_io = time.monotonic()
            if is_terminal(hub.payload):
                yield END_EVENT
                return
        elif time.monotonic() - last_io >= settings.heartbeat:
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
        loop = asyncio.get_running_loop()
        timed_out = False
        try:
            async with anyio.create_task_group() as tg:

                def too_slow() -> None:
                    nonlocal timed_out
                    timed_out = True
                    tg.cancel_scope.cancel()

                async def send_in_time(message: Message) -> None:
                    # A timer handle per send (cheap), not a cancel scope per send.
                    timer = loop.call_later(self.send_timeout, too_slow)
                    try:
                        await send(message)
                    finally:
                        timer.cancel()

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_disconnect)
                await send_in_time({"type": "http.response.start", "status": self.status_code,
                                    "headers": self.raw_headers})
                async for chunk in self.chunks:
                    await send_in_time({"type": "http.response.body", "body": chunk,
                                        "more_body": True})
                await send_in_time({"type": "http.response.body", "body": b"",
                                    "more_body": False})
                tg.cancel_scope.cancel()
        finally:
            await _aclose(self.chunks)
            if self.on_close is not None:
                self.on_close()
        if timed_out:
            log.warning("dropped a stream client that took no data for %.0fs", self.send_timeout)


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
    require(caller, SCOPE_CAMPAIGNS)
    heads = await anyio.to_thread.run_sync(ctx.reader.campaign_heads, campaign_id)
    head = head_of(heads, caller, campaign_id)

    settings = settings_of(request)
    hub = hub_for(request, ctx, head.key)
    ev = hub.join()
    try:
        await hub.ready.wait()
        if hub.failed is not None:
            raise hub.failed
        if hub.missing:
            raise CampaignNotFound()
        if last_event_id == str(hub.position) and is_terminal(hub.payload):
            # The client holds the final payload: 204 tells EventSource not to reconnect.
            hub.leave(ev)
            return Response(status_code=204, headers={"Cache-Control": "no-cache"})
    except BaseException:
        hub.leave(ev)
        raise
    return EventStreamResponse(
        status_events(hub, ev, last_event_id, settings), settings.send_timeout,
        on_close=lambda: hub.leave(ev),
    )
