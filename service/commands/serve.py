"""``projector serve``: the projector and the HTTP API in one process (``service.serve``)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from service.commands.base import (
    BOOTSTRAP,
    DATA_DIR,
    DB,
    HTTP,
    MEMBERSHIP,
    WORKER_TUNING,
    command,
    open_live_store,
)

if TYPE_CHECKING:
    from projector.settings import Settings


@command(
    "serve",
    "run the projector and the HTTP API in one process",
    *BOOTSTRAP,
    *DB,
    *DATA_DIR,
    *HTTP,
    *WORKER_TUNING,
    *MEMBERSHIP,
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    from api.errors import KeysFileError
    from api.keys import KeyRing
    from projector.intake import runtime
    from projector.intake.errors import PartitionCountError
    from projector.intake.worker import run_worker
    from service.serve import serving

    if settings.api_keys is None:
        print("projector serve: --api-keys FILE (or PROJECTOR_API_KEYS) is required")
        return 2
    try:
        keys = KeyRing.load(settings.api_keys)
    except KeysFileError as e:
        print(f"projector serve: {e}")
        return 2
    if (store := open_live_store(settings, "serve")) is None:
        return 2
    try:
        with serving(settings, store, keys) as projector:
            print(
                f"projector serve: {settings.bootstrap} -> {settings.data_dir or settings.db}; "
                f"API on http://{settings.host}:{settings.port} (docs at /docs); "
                f"group {settings.group_id}, advertised as {projector.membership.url}",
                flush=True,
            )
            runtime.settle(settings.gil_switch_interval_ms)
            return run_worker(projector.app)
    except PartitionCountError as e:  # raised by serving()'s prepare, before the group
        print(f"projector serve: {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        store.close()
