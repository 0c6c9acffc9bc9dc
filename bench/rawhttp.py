"""A lean keep-alive HTTP/1.1 GET client for benchmark pollers.

The status benchmark's pollers share the machine with the server they
measure. ``httpx`` spends a few milliseconds of CPU per request; with 50
pollers in a closed loop the client, not the server, was the bottleneck
(docs/benchmarks.md#e-status_latency).
This one does only what a poll needs: GET with headers over a pooled
connection, a ``Content-Length`` body, nothing else. Anything it does not
understand (chunked bodies, a malformed status line) raises rather than
being guessed at, so a wrong reading cannot pass as a fast one.
"""

from __future__ import annotations

import asyncio


class RawHTTPError(Exception):
    """The server's answer was not one this client reads."""


class RawPool:
    """Up to ``size`` connections to one host; each request borrows one."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(size)

    @classmethod
    def for_url(cls, url: str, size: int) -> RawPool:
        """``http://host:port`` (no path) -> a pool."""
        host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
        return cls(host, int(port), size)

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """Status and body of ``GET path``."""
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n"
        ).encode("latin-1")
        async with self._slots:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect()
            try:
                status_line = await self._send(conn, request)
            except (ConnectionError, asyncio.IncompleteReadError):
                status_line = b""
            if not status_line and reused:
                # The server closed the idle connection (keep-alive timeout): once more, fresh.
                conn[1].close()
                conn = await self._connect()
                status_line = await self._send(conn, request)
            return await self._read_response(conn, status_line)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    @staticmethod
    async def _send(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                    request: bytes) -> bytes:
        reader, writer = conn
        writer.write(request)
        await writer.drain()
        return await reader.readline()

    async def _read_response(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                             status_line: bytes) -> tuple[int, bytes]:
        reader, writer = conn
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            writer.close()
            raise RawHTTPError(f"bad status line {status_line!r}")
        length: int | None = None
        close = parts[0] == b"HTTP/1.0"
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                writer.close()
                raise RawHTTPError(f"unsupported transfer-encoding {value.strip()!r}")
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        status = int(parts[1])
        if length is None and status not in (204, 304):
            writer.close()
            raise RawHTTPError("response without Content-Length")
        body = await reader.readexactly(length) if length else b""
        if close:
            writer.close()
        else:
            self._idle.append(conn)
        return status, body

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()
