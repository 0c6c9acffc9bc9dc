"""``projector topics``: create the contract topics (idempotent)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from service.commands.base import BOOTSTRAP, command, option

if TYPE_CHECKING:
    from projector.settings import Settings


@command(
    "topics",
    "create the contract topics (idempotent)",
    *BOOTSTRAP,
    option("--partitions", type=int, help="partitions per topic (default 4)"),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    from projector.intake.errors import TopicsError
    from projector.intake.topics import ensure_topics_sync

    partitions = args.partitions or settings.partitions
    try:
        ensure_topics_sync(settings.bootstrap, settings.topics.all, partitions)
    except TopicsError as e:
        print(f"projector topics: {e}", file=sys.stderr)
        return 1
    print(
        f"topics ready on {settings.bootstrap}: {', '.join(settings.topics.all)} "
        f"({partitions} partitions)",
        flush=True,
    )
    return 0
