"""``projector export-schemas``: the events' JSON Schemas, checked into ``docs/schemas``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.commands.base import command, option

if TYPE_CHECKING:
    from projector.settings import Settings


@command(
    "export-schemas",
    "write the events' JSON Schemas into docs/",
    option("--out", default="docs/schemas", help="output folder (default docs/schemas)"),
    option("--check", action="store_true", help="exit 1 if the files on disk are stale"),
)
def run(args: argparse.Namespace, settings: Settings | None) -> int:
    """Exit 1 when ``--check`` finds stale files or writing fails."""
    from schemas.errors import ExportError
    from schemas.export import export_schemas, stale_files

    del settings  # the schemas depend on the models only
    out = Path(args.out)
    try:
        if args.check:
            stale = stale_files(out)
            if stale:
                print("stale JSON Schemas (run `make schemas`):", file=sys.stderr)
                for path in stale:
                    print(f"  {path}", file=sys.stderr)
                return 1
            print(f"JSON Schemas in {out} are up to date")
            return 0
        for path in export_schemas(out):
            print(path)
    except ExportError as e:
        print(f"projector export-schemas: {e}", file=sys.stderr)
        return 1
    return 0
