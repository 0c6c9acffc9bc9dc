"""``projector archive``: every accepted event to Parquet by date; resumes from the archive."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from service.commands.base import BOOTSTRAP, command, option

if TYPE_CHECKING:
    from projector.settings import Settings


@command(
    "archive",
    "archive every accepted event to Parquet by date",
    *BOOTSTRAP,
    option("--dir", required=True, help="archive folder"),
    option("--until-caught-up", action="store_true", help="exit once at the log end"),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import time

    from projector.intake.errors import OffsetsError
    from projector.rebuild.archive import archive
    from projector.rebuild.errors import ArchiveError

    t0 = time.monotonic()
    try:
        writer = asyncio.run(archive(settings, args.dir, until_caught_up=args.until_caught_up))
    except (ArchiveError, OffsetsError) as e:
        print(f"projector archive: {e}")
        return 2
    elapsed = time.monotonic() - t0
    print(
        f"projector archive: {writer.events_written:,} events archived to {args.dir} in "
        f"{elapsed:.1f}s ({writer.rejected:,} rejected items not archived)",
        flush=True,
    )
    return 0
