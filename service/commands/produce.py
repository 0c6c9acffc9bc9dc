"""``projector produce FILE.jsonl``: validate a file of events, then produce it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from service.commands.base import BOOTSTRAP, argument, command, option

if TYPE_CHECKING:
    from projector.settings import Settings


@command(
    "produce",
    "validate a JSONL file of events and produce it",
    argument("file", help="JSONL file, one event per line"),
    *BOOTSTRAP,
    option("--skip-invalid", action="store_true", help="send the valid lines, skip the bad ones"),
    option("--array-size", type=int, default=1, help="events per Kafka record (default 1)"),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 1 on bad lines (unless skipped) or Kafka errors."""
    import asyncio

    from projector.tools.errors import EmitError
    from projector.tools.produce import produce_file

    try:
        report = asyncio.run(
            produce_file(
                args.file,
                settings.bootstrap,
                settings.topics,
                skip_invalid=args.skip_invalid,
                array_size=args.array_size,
                create_partitions=settings.partitions,
            )
        )
    except OSError as e:
        print(f"projector produce: cannot read {args.file}: {e}", file=sys.stderr)
        return 1
    except (EmitError, ValueError) as e:
        print(f"projector produce: {e}", file=sys.stderr)
        return 1
    for error in report.invalid:
        print(error, file=sys.stderr)
    if report.invalid and not args.skip_invalid:
        print(
            f"{len(report.invalid)} invalid lines in {args.file}; nothing sent "
            "(--skip-invalid sends the valid ones)",
            file=sys.stderr,
        )
        return 1
    print(report.summary(), flush=True)
    return 0
