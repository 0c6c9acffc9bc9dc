"""``projector verify --db A --db B``: do two databases hold the same projections?"""

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
    option("--db", action="append", dest="dbs", required=True, help="give twice: --db A --db B"),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 identical, 1 different, 2 error."""
    from projector.store.errors import VerifyError
    from projector.store.verify import compare

    if len(args.dbs) != 2:
        print("projector verify: give exactly two databases: --db A --db B")
        return 2
    try:
        diff = compare(args.dbs[0], args.dbs[1])
    except VerifyError as e:
        print(f"projector verify: {e}")
        return 2
    print(diff.render(), flush=True)
    return 0 if diff.identical else 1
