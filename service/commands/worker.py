"""``projector worker``: the projector alone, Kafka in, DuckDB out."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from service.commands.base import (
    BOOTSTRAP,
    DATA_DIR,
    DB,
    MEMBERSHIP,
    WORKER_TUNING,
    command,
    open_live_store,
    option,
)

if TYPE_CHECKING:
    from projector.settings import Settings


@command(
    "worker",
    "run the projector alone (Kafka -> DuckDB)",
    *BOOTSTRAP,
    *DB,
    *DATA_DIR,
    *WORKER_TUNING,
    *MEMBERSHIP,
    option(
        "--until-caught-up",
        action="store_true",
        help="exit 0 once every partition is applied up to the log end seen at start",
    ),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    from projector.intake import runtime
    from projector.intake.errors import PartitionCountError
    from projector.intake.worker import Projector, run_worker

    if (store := open_live_store(settings, "worker")) is None:
        return 2
    try:
        projector = Projector(
            settings, store, exit_when_caught_up=getattr(args, "until_caught_up", False)
        )
        try:
            projector.prepare()
        except PartitionCountError as e:
            print(f"projector worker: {e}", file=sys.stderr, flush=True)
            return 2
        print(f"projector worker: {settings.bootstrap} -> {settings.db}", flush=True)
        runtime.settle_worker(settings.gil_switch_interval_ms)
        return run_worker(projector.app)
    finally:
        store.close()
