"""``projector api``: serve a DuckDB file read-only, without a projector."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from service.commands.base import DB, HTTP, command

if TYPE_CHECKING:
    from projector.settings import Settings

log = logging.getLogger(__name__)


def _fail(message: str) -> int:
    print(f"projector api: {message}", file=sys.stderr)
    return 2


@command("api", "serve a DuckDB file read-only, without a projector", *DB, *HTTP)
def run(args: argparse.Namespace, settings: Settings) -> int:
    from api.app import create_app
    from api.errors import ApiError
    from api.keys import KeyRing
    from api.limits import Limits
    from api.readstore import ReadStore
    from api.server import build_foreground_server, read_only_status
    from projector.intake.metrics import Metrics
    from projector.store.errors import StoreError, StoreLockedError

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
            receipt_window=settings.receipt_window,
        )
        server = build_foreground_server(app, settings.host, settings.port)
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
