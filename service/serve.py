"""The projector and the HTTP API in one process (what ``projector serve`` runs).

DuckDB admits one process per file, so the API that reads the live
projections must live in the writer's process. Faust keeps the main thread
(it owns signals and its event loop); uvicorn runs in a thread with its own
loop and reads through cursors of the same DuckDB connection, so it sees
every committed flush and never blocks ingestion on a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from api.app import create_app
from api.deps import replace_reader
from api.keys import KeyRing
from api.limits import Limits
from api.readstore import ReadStore
from api.server import build_uvicorn_server
from api.shardreads import ShardedReadStore
from projector.intake.feed import ChangeFeed
from projector.intake.worker import Projector
from projector.rebuild.swap import SwapController
from projector.settings import Settings
from projector.store.shards import Shards
from projector.store.writer import Store

log = logging.getLogger(__name__)


def reader_of(store: Store | Shards) -> ReadStore:
    """The API's reads beside the writer: DuckDB through its cursors, polls from its memory."""
    if isinstance(store, Shards):
        return ShardedReadStore(store)
    return ReadStore(store.cursor, heads=store.heads, polled=store.polled)


def bound_port(server: Any, thread: threading.Thread, timeout: float = 10.0) -> int | None:
    """The port uvicorn listens on, once it does; None if it never started."""
    deadline = time.monotonic() + timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)  # a condition polled, not a guess: uvicorn has no start event
    for listener in getattr(server, "servers", []) if server.started else []:
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    return None


@contextmanager
def serving(settings: Settings, store: Store | Shards, keys: KeyRing) -> Iterator[Projector]:
    """A prepared projector over ``store`` with the API answering in a thread.

    The caller runs the projector's faust app in the foreground (it owns the
    main thread). On exit the API stops, and a database swapped in while
    serving is closed; ``store`` itself stays the caller's to close.
    """
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
            # A swap replaces one file; a node's shards are swapped by issue 29's tools.
            admin=None
            if isinstance(store, Shards)
            else SwapController(projector, lambda new: replace_reader(app, reader_of(new))),
            limits=Limits.from_settings(settings),
            receipt_window=settings.receipt_window,
            # Routing between nodes is for a group whose nodes say where they
            # are (--advertise); a single node answers from its own database.
            owners=projector.membership if settings.advertise else None,
        )
        server = build_uvicorn_server(app, settings.host, settings.port)
        thread = threading.Thread(target=server.run, name="api", daemon=True)
        thread.start()
        # The group learns this node's URL when it joins, after this returns;
        # without --advertise the URL names the port as bound (--port 0 too).
        projector.advertise(settings.advertised_url(bound_port(server, thread)))
        yield projector
    finally:
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=5)
        if projector is not None and projector.pipeline.store is not store:
            projector.pipeline.store.close()  # swapped in while serving
