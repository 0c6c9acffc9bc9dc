"""``projector topics``: create the contract topics (idempotent)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from service.commands.base import BOOTSTRAP, command, create_topics, option, positive_int

if TYPE_CHECKING:
    from projector.settings import Settings


@command(
    "topics",
    "create the contract topics (idempotent)",
    *BOOTSTRAP,
    option("--partitions", type=positive_int, help="partitions per topic (default 4)"),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    partitions = create_topics("topics", settings.bootstrap, settings, args.partitions)
    if partitions is None:
        return 1
    print(
        f"topics ready on {settings.bootstrap}: {', '.join(settings.topics.all)} "
        f"({partitions} partitions)",
        flush=True,
    )
    return 0
