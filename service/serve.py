"""``projector serve``: the projector and the HTTP API in one process.

DuckDB admits one process per file, so the API that reads the live
projections must live in the writer's process. Faust keeps the main thread
(it owns signals and its event loop); uvicorn runs in a thread with its own
loop and reads through cursors of the same DuckDB connection, so it sees
every committed flush and never blocks ingestion on a lock.
"""

from __future__ import annotations

import argparse
import logging
import threading

from api.app import create_app
from api.deps import replace_reader
from api.errors import KeysFileError
from api.keys import KeyRing
from api.limits import Limits
from api.readstore import ReadStore
from api.server import build_uvicorn_server
from projector.intake import runtime
from projector.intake.feed import ChangeFeed
from projector.intake.worker import Projector, run_worker
from projector.rebuild.swap import SwapController
from projector.settings import Settings
from projector.store.errors import StoreError
from projector.store.retired import retired_note
from projector.store.writer import Store, live_store

log = logging.getLogger(__name__)


def reader_of(store: Store) -> ReadStore:
    """The API's reads beside the writer: DuckDB through its cursors, polls from its memory."""
    return ReadStore(store.cursor, heads=store.heads, polled=store.polled)


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    if settings.api_keys is None:
        print("projector serve: --api-keys FILE (or PROJECTOR_API_KEYS) is required")
        return 2
    try:
        keys = KeyRing.load(settings.api_keys)
    except KeysFileError as e:
        print(f"projector serve: {e}")
        return 2
    if (note := retired_note(settings.db)) is not None:
        print(f"projector serve: {note}")
        return 2
    try:
        store = live_store(settings).open()
    except StoreError as e:
        print(f"projector serve: {e}")
        return 2
    server = None
    thread = None
    projector = None
    try:
        projector = Projector(settings, store)
        projector.prepare()
        feed = ChangeFeed()  # committed flushes wake the API's /stream clients
        projector.pipeline.listeners.append(feed.publish)
        app = create_app(
            reader_of(store),
            keys=keys,
            status=projector.status.snapshot,
            metrics=projector.metrics,
            feed=feed,
            admin=SwapController(projector, lambda new: replace_reader(app, reader_of(new))),
            limits=Limits.from_settings(settings),
        )
        server = build_uvicorn_server(app, settings.host, settings.port)
        thread = threading.Thread(target=server.run, name="api", daemon=True)
        thread.start()
        print(
            f"projector serve: {settings.bootstrap} -> {settings.db}; "
            f"API on http://{settings.host}:{settings.port} (docs at /docs)",
            flush=True,
        )
        runtime.settle(settings.gil_switch_interval_ms)
        return run_worker(projector.app)
    finally:
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=5)
        if projector is not None and projector.pipeline.store is not store:
            projector.pipeline.store.close()  # swapped in while serving
        store.close()
