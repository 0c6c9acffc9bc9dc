"""Running the API: a foreground server (``projector api`` over a read-only file) and
a server in a thread (``serve``)."""

from __future__ import annotations

import logging
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from api.readstore import ReadStore
from projector.intake.health import PipelineSnapshot

log = logging.getLogger(__name__)


class _ThreadServer(uvicorn.Server):
    """A uvicorn server that never touches signal handlers: its owner stops it
    by setting ``should_exit`` (the process's own handlers stay in charge)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _ForegroundServer(uvicorn.Server):
    """Foreground server: SIGINT/SIGTERM stop it gracefully and ``run()`` returns.

    uvicorn re-raises the captured signal after shutdown, which would kill the
    process before the database is closed; here the handlers are only restored.
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


_QUERY_KEY = re.compile(r"(api_key=)[^&\s\"]+", re.IGNORECASE)


class RedactQueryKeys(logging.Filter):
    """Blanks ``api_key=`` values (the stream accepts a key in the query string)
    in uvicorn's access lines, should an operator's logging config enable them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _QUERY_KEY.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args
            )
        elif isinstance(record.msg, str):
            record.msg = _QUERY_KEY.sub(r"\1[redacted]", record.msg)
        return True


def _install_redaction() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryKeys) for f in access.filters):
        access.addFilter(RedactQueryKeys())


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    _install_redaction()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # the process's logging configuration applies
        access_log=False,  # latency goes to /metrics; access logs would cost per request
        server_header=False,
        lifespan="off",
        # asyncio's loop, whatever else is installed: uvloop did no better
        # under ingestion, and an installed one must not change the behaviour
        # unnoticed (docs/decisions/0010-uvloop-and-httptools.md).
        loop="asyncio",
        timeout_graceful_shutdown=5,
    )


def build_uvicorn_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A server to run with ``server.run()`` in a background thread; stop it with
    ``server.should_exit = True``. Installs no signal handlers."""
    return _ThreadServer(_config(app, host, port))


def build_foreground_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A server to run with ``server.run()`` on the main thread: SIGINT and
    SIGTERM stop it gracefully and ``run()`` returns; it raises ``SystemExit``
    when it cannot bind."""
    return _ForegroundServer(_config(app, host, port))


def read_only_status(reader: ReadStore) -> PipelineSnapshot:
    """A file served alone does not move: its position is read once."""
    return PipelineSnapshot(
        mode="read-only",
        ready=True,
        offsets=reader.offsets(),
        log_end={},
        inconsistent={},
        flush_seq=reader.flush_seq(),
        events_applied=0,
        last_error=None,
    )
