"""The status benchmark's lean HTTP client reads what a server sends, or refuses.

Its figures are only as good as its reading of responses: these run it
against a real asyncio socket server that answers with fixed bytes.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.rawhttp import RawHTTPError, RawPool


async def _server(responses: list[bytes], close_after_each: bool = False):
    """Serve ``responses`` in order, one per request; returns (server, connections seen).

    Each connection seen is an event set once the server has closed it.
    """
    seen: list[asyncio.Event] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closed = asyncio.Event()
        seen.append(closed)
        while responses:
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"GET /v1/x HTTP/1.1\r\n")
            assert b"\r\nX-API-Key: k\r\n" in head
            writer.write(responses.pop(0))
            await writer.drain()
            if close_after_each:
                break
        writer.close()
        await writer.wait_closed()
        closed.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_reads_bodies_and_reuses_the_connection():
    server, seen = await _server([_ok(b'{"a":1}'), _ok(b"", b"x-y: z\r\n"), _ok(b"0123456789")])
    pool = RawPool.for_url(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", 4)
    got = [await pool.get("/v1/x", {"X-API-Key": "k"}) for _ in range(3)]
    assert got == [(200, b'{"a":1}'), (200, b""), (200, b"0123456789")]
    assert len(seen) == 1  # one connection for all three
    await pool.close()
    server.close()


async def test_reconnects_when_the_server_closed_an_idle_connection():
    server, seen = await _server([_ok(b"one"), _ok(b"two")], close_after_each=True)
    pool = RawPool.for_url(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", 1)
    assert await pool.get("/v1/x", {"X-API-Key": "k"}) == (200, b"one")
    # The server has closed the idle connection (whether the client has read
    # its end yet or not: the retry must not depend on it).
    await asyncio.wait_for(seen[0].wait(), 5)
    assert await pool.get("/v1/x", {"X-API-Key": "k"}) == (200, b"two")
    assert len(seen) == 2
    server.close()


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: y\r\n\r\nbody",
        b"garbage\r\n\r\n",
    ],
)
async def test_refuses_what_it_cannot_read(response):
    server, _ = await _server([response])
    pool = RawPool.for_url(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", 1)
    with pytest.raises(RawHTTPError):
        await pool.get("/v1/x", {"X-API-Key": "k"})
    server.close()
