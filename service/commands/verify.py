"""``projector verify --db A --db B``: do two databases hold the same projections?

Either side may be a data directory of shards (``--data-dir``): compared as the
union of its shards.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from service.commands.base import command, option

if TYPE_CHECKING:
    from projector.settings import Settings


@command(
    "verify",
    "compare the projections of two databases",
    # dest "dbs": a list, kept apart from the ``db`` setting it would otherwise override.
    option("--db", action="append", dest="dbs", help="give twice: --db A --db B"),
    option(
        "--data-dir",
        action="append",
        dest="dirs",
        metavar="DIR",
        help="a node's shards instead of a file (with --db, or twice)",
    ),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 identical, 1 different, 2 error."""
    from projector.store.errors import VerifyError
    from projector.store.verify import compare

    sides = [*(args.dbs or []), *(args.dirs or [])]
    if len(sides) != 2:
        print("projector verify: give exactly two databases: --db A --db B "
              "(or --data-dir for a node's shards)")  # fmt: skip
        return 2
    try:
        diff = compare(sides[0], sides[1])
    except VerifyError as e:
        print(f"projector verify: {e}")
        return 2
    print(diff.render(), flush=True)
    return 0 if diff.identical else 1
