"""Databases a swap retired: a marker beside the old file, so a restart cannot serve it again.

Written by ``projector.rebuild.swap``; read by every command that opens a
database to write it (``worker``, ``serve``).
"""

from __future__ import annotations

import json
from pathlib import Path


def retired_marker(db: Path | str) -> Path:
    """Written beside a database that a swap replaced: ``<db>.retired``."""
    return Path(f"{db}.retired")


def retired_note(db: Path | str) -> str | None:
    """Why ``db`` should not be served again, or None.

    After a swap the server runs on the new file, but ``PROJECTOR_DB`` still
    names the old one: a restart would quietly bring the old projections back
    (the bug the rebuild fixed, say). The marker turns that into a clear refusal.
    """
    marker = retired_marker(db)
    if not marker.exists():
        return None
    try:
        info = json.loads(marker.read_text())
        new, at = info["replaced_by"], info["at"]
    except (OSError, ValueError, KeyError, TypeError):
        new, at = "another database", "an unknown time"
    return (
        f"{db} was swapped out for {new} at {at}; start with --db {new} "
        f"(or delete {marker} to serve this file anyway)"
    )
