"""``projector swap --url URL --db NEW``: ask a running serve to switch to a rebuilt database."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from service.commands.base import command, option

if TYPE_CHECKING:
    from projector.settings import Settings


def _key(text: str) -> str | None:
    # An empty --admin-key falls back to PROJECTOR_ADMIN_KEY, as it always has.
    return text or None


@command(
    "swap",
    "switch a running serve to a rebuilt database",
    option("--url", default="http://127.0.0.1:8000", help="the running serve's base URL"),
    option("--db", required=True, help="the rebuilt database file"),
    option("--admin-key", type=_key, help="key holding the admin scope (env PROJECTOR_ADMIN_KEY)"),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 swapped, 1 refused or unreachable, 2 without an admin key."""
    from projector.rebuild.errors import SwapError
    from projector.rebuild.swap import request_swap

    key = settings.admin_key.get_secret_value() if settings.admin_key is not None else ""
    if not key:
        print(
            "projector swap: --admin-key (or PROJECTOR_ADMIN_KEY) with the admin scope is required"
        )
        return 2
    try:
        data = request_swap(
            args.url, args.db, key, on_wait=lambda why: print(f"projector swap: waiting ({why})")
        )
    except SwapError as e:
        print(f"projector swap: {e}")
        return 1
    print(
        f"swapped to {data['db']} in {data['seconds']}s "
        f"({data['caught_up_events']} events caught up); "
        f"{data['previous_db']} is no longer used"
    )
    if data.get("cleared_inconsistent"):
        print(f"inconsistent flags cleared: {', '.join(data['cleared_inconsistent'])}")
    return 0
