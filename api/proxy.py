"""Forwarding a request to the node that owns its campaign, and asking other nodes for data.

One ``httpx.AsyncClient`` per event loop, shared by every request (its
connection pool keeps the nodes' connections open). A forwarded request keeps
its method, path, query, body and end-to-end headers, and carries
``X-Projection-Hop`` (this node's URL) and the request id; the answer comes
back as the owner sent it: status, headers (ETag, ``X-Projection-*``,
``Retry-After``, ...) and body, streamed chunk by chunk as it arrives, so
server-sent events and CSV exports pass without being buffered. Hop-by-hop
headers (RFC 9110 section 7.6.1) stay on their own hop, both ways.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

import anyio
import httpx
from starlette.types import Message, Receive, Scope, Send

from api.errors import PartitionUnavailable

log = logging.getLogger(__name__)

HOP_HEADER = "X-Projection-Hop"

# Never forwarded: they describe one connection, not the message (RFC 9110 7.6.1),
# plus what each side sets for itself (Host, Content-Length of the re-sent body, Date).
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
})
_REQUEST_OWN = frozenset({"host", "content-length", "x-request-id", HOP_HEADER.lower()})
_RESPONSE_OWN = frozenset({"date", "server"})

# Connecting to a live node on the cluster's network takes milliseconds; one that
# does not answer in this long is treated as down. A read may wait longer: an
# event stream is silent for up to its heartbeat (api.routes.stream).
TIMEOUT = httpx.Timeout(connect=2.0, read=30.0, write=10.0, pool=5.0)


class Unreachable(PartitionUnavailable):
    """The owner could not be asked (refused, timed out, or cut off before answering)."""


def _connection_named(headers: Iterable[tuple[str, str]]) -> set[str]:
    named: set[str] = set()
    for name, value in headers:
        if name == "connection":
            named.update(v.strip().lower() for v in value.split(","))
    return named


def end_to_end(headers: Iterable[tuple[str, str]], own: frozenset[str]) -> list[tuple[str, str]]:
    """The headers that travel on: neither hop-by-hop, nor named by Connection, nor in ``own``."""
    pairs = [(k.lower(), v) for k, v in headers]
    drop = _HOP_BY_HOP | own | _connection_named(pairs)
    return [(k, v) for k, v in pairs if k not in drop]


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class Proxy:
    """The one HTTP client of this app towards the other nodes."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def client(self) -> httpx.AsyncClient:
        """This event loop's client (an app served by one uvicorn has one loop; a test's
        client may run the same app on another)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for old in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[old]
            client = httpx.AsyncClient(
                timeout=TIMEOUT, follow_redirects=False, trust_env=False,
                transport=self._transport,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            )
            # Only the client's own headers go on: no defaults added on its behalf.
            for name in list(client.headers):
                del client.headers[name]
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close this loop's client (the server's shutdown)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    async def forward(
        self, owner: str, me: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Send the request to ``owner`` and stream its answer back.

        Raises ``Unreachable`` if the owner gave no answer; once its answer has
        started, a failure only ends the stream (the status is already sent).
        """
        body = await _read_body(receive)
        headers = end_to_end(
            ((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]),
            _REQUEST_OWN,
        )
        headers.append((HOP_HEADER.lower(), me))
        state = scope.get("state") or {}
        if isinstance(state, dict) and isinstance(state.get("request_id"), str):
            headers.append(("x-request-id", state["request_id"]))
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        url = owner.rstrip("/") + raw_path.decode("latin-1")
        query: bytes = scope.get("query_string", b"")
        if query:
            url += "?" + query.decode("latin-1")
        client = self.client()
        request = client.build_request(scope["method"], url, headers=headers, content=body)
        try:
            upstream = await client.send(request, stream=True)
        except httpx.HTTPError as e:
            log.warning("owner %s did not answer %s %s: %r", owner, scope["method"],
                        scope["path"][:200], e)
            raise Unreachable() from e
        try:
            await send({
                "type": "http.response.start",
                "status": upstream.status_code,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in end_to_end(upstream.headers.multi_items(), _RESPONSE_OWN)
                ],
            })
            await _pump(upstream, receive, send, owner)
        finally:
            await upstream.aclose()

    async def get(
        self, url: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> httpx.Response:
        """One whole answer from another node; ``Unreachable`` when it gives none."""
        try:
            return await self.client().get(url, params=params, headers=headers)
        except httpx.HTTPError as e:
            log.warning("no answer from %s: %r", url, e)
            raise Unreachable() from e


async def _pump(upstream: httpx.Response, receive: Receive, send: Send, owner: str) -> None:
    """Body chunks on as they come, until the owner ends or the client goes."""
    async with anyio.create_task_group() as tg:

        async def until_disconnect() -> None:
            message: Message = {"type": ""}
            while message["type"] != "http.disconnect":
                message = await receive()
            # The client went: stop reading, which closes the owner's stream too.
            tg.cancel_scope.cancel()

        tg.start_soon(until_disconnect)
        try:
            async for chunk in upstream.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as e:
            log.warning("answer from %s cut off: %r", owner, e)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        tg.cancel_scope.cancel()
