"""Running the API: ``projector api`` over a read-only file, and a server for ``serve``."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.errors import ApiError
from api.keys import KeyRing
from api.limits import Limits
from api.readstore import ReadStore
from projector.intake.health import PipelineSnapshot
from projector.intake.metrics import Metrics
from projector.settings import Settings
from projector.store.errors import StoreError, StoreLockedError

log = logging.getLogger(__name__)


class _ThreadServer(uvicorn.Server):
    """A uvicorn server that never touches signal handlers: its owner stops it
    by setting ``should_exit`` (the process's own handlers stay in charge)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _CliServer(uvicorn.Server):
    """Foreground server: SIGINT/SIGTERM stop it gracefully and ``run_cli`` returns 0.

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
        # asyncio's loop, whatever else is installed: uvloop measured no
        # better under ingestion (docs/benchmarks.md (e), 2026-11-30).
        loop="asyncio",
        timeout_graceful_shutdown=5,
    )


def build_uvicorn_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A server to run with ``server.run()`` in a background thread; stop it with
    ``server.should_exit = True``. Installs no signal handlers."""
    return _ThreadServer(_config(app, host, port))


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


def _fail(message: str) -> int:
    print(f"projector api: {message}", file=sys.stderr)
    return 2


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    """``projector api --db PATH --api-keys FILE --host H --port N``."""
    if settings.api_keys is None:
        return _fail("--api-keys FILE (or PROJECTOR_API_KEYS) is required")
    try:
        keys = KeyRing.load(settings.api_keys)
    except ApiError as e:
        return _fail(str(e))
    if len(keys) == 0:
        log.warning("the API keys file lists no keys: every data request will get 401")
    try:
        reader = ReadStore.open_file(settings.db, memory_limit=settings.duckdb_memory_limit)
    except StoreLockedError:
        return _fail(
            f"{settings.db} is held by another process (a running projector?). DuckDB lets "
            "only one process open a file: serve a copy (projector api --db COPY) or run "
            "`projector serve`, which serves the live database in-process."
        )
    except (StoreError, ApiError) as e:
        return _fail(str(e))
    try:
        snapshot = read_only_status(reader)
        app = create_app(
            reader,
            keys=keys,
            status=lambda: snapshot,
            metrics=Metrics(),
            limits=Limits.from_settings(settings),
        )
        server = _CliServer(_config(app, settings.host, settings.port))
        log.info(
            "serving %s read-only on http://%s:%d (flush %d, %d keys)",
            settings.db,
            settings.host,
            settings.port,
            snapshot.flush_seq,
            len(keys),
        )
        try:
            server.run()
        except SystemExit as e:  # uvicorn exits when it cannot bind
            return int(e.code) if isinstance(e.code, int) else 1
        return 0
    finally:
        reader.close()
