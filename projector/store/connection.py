"""Opening a projector database: DuckDB's errors turned into ours, and the layout version.

A database records the version of the projection layout it was built with
(``tables.SCHEMA_VERSION``); whoever opens one to read or write refuses
another version with ``version_refusal`` instead of misreading its rows.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from projector.store.errors import StoreError, StoreLockedError
from projector.store.tables import SCHEMA_VERSION


def connect(
    path: Path | str,
    *,
    read_only: bool = False,
    memory_limit: str = "2GB",
    checkpoint_threshold: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open DuckDB, turning its lock and I/O errors into ours."""
    # memory_limit goes in the connect config: WAL replay after a crash runs
    # before any SET statement could apply.
    config = {"memory_limit": memory_limit}
    if checkpoint_threshold is not None:
        config["checkpoint_threshold"] = checkpoint_threshold
    try:
        if not read_only:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            raise StoreLockedError(f"{path} is held by another process: {e}") from e
        raise StoreError(f"cannot open {path}: {e}") from e
    except duckdb.Error as e:
        raise StoreError(f"cannot open {path}: {e}") from e


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back, ignoring that there may be nothing to roll back."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass


def stored_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The projection layout version a database records; None for a new, empty one."""
    present = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_name = 'projector_meta'"
    ).fetchone()[0]  # type: ignore[index]
    if not present:
        return None
    row = con.execute("SELECT value FROM projector_meta WHERE key = 'schema_version'").fetchone()
    return None if row is None else int(row[0])


def version_refusal(path: Path | str, found: int) -> str:
    """What to tell an operator whose database has another layout version."""
    return (
        f"{path} holds projections of layout version {found}; this projector reads "
        f"version {SCHEMA_VERSION} and would misread its rows. Rebuild it into a new file "
        f"with `projector replay --db NEW.duckdb` (from Kafka, or --from-archive DIR), then "
        f"switch to it with `projector swap --db NEW.duckdb` or restart on it "
        f'(docs/operations.md, "Upgrading the projection layout").'
    )
