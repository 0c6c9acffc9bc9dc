"""The writer's cache of committed projection rows.

Only the writer changes the tables, so a row it loaded or wrote stays exact
until it writes that key again: the cache is updated only after a commit, and
cached rows are never mutated (the fold clones before changing). Absent keys
are cached too (``None``), so a key is read from DuckDB at most once.

When the database was empty at start and nothing was evicted since, the cache
holds the whole state: a flush then reads nothing from DuckDB, which is what
makes fresh replays fast. Past ``max_rows`` the cache is dropped whole and
rebuilt from misses: crude, exact and bounded.
"""

from __future__ import annotations

from typing import Any

from projector.fold.prior import Changes
from projector.fold.rows import MessageKey, RecipientKey

MISSING = object()
TABLES = ("campaigns", "runs", "batches", "recipients", "messages", "snapshots", "attempts")


class RowCache:
    def __init__(self, max_rows: int, *, complete: bool) -> None:
        self.max_rows = max_rows
        self.complete = complete
        self.tables: dict[str, dict[Any, Any]] = {name: {} for name in TABLES}
        # message (run key + message id) -> recipients of that run whose
        # winning submit names it; an entry exists only when known complete.
        self.holders: dict[MessageKey, set[RecipientKey]] = {}
        self.hits = 0
        self.misses = 0

    def split(self, table: str, keys: Any) -> tuple[dict[Any, Any], list[Any]]:
        """Cached rows for ``keys`` and the keys DuckDB must be asked about."""
        rows = self.tables[table]
        found: dict[Any, Any] = {}
        unknown: list[Any] = []
        for key in keys:
            row = rows.get(key, MISSING)
            if row is MISSING:
                if not self.complete:
                    unknown.append(key)
            elif row is not None:
                found[key] = row
        self.hits += len(found)
        self.misses += len(unknown)
        return found, unknown

    def remember(self, table: str, asked: list[Any], rows: dict[Any, Any]) -> None:
        """Record what DuckDB answered for ``asked`` (absent keys as None)."""
        cached = self.tables[table]
        for key in asked:
            cached[key] = rows.get(key)

    def remember_holders(self, message: MessageKey, keys: set[RecipientKey]) -> None:
        self.holders[message] = set(keys)

    def known_holders(self, message: MessageKey) -> set[RecipientKey] | None:
        h = self.holders.get(message)
        if h is None and self.complete:
            return set()
        return h

    def apply(self, changes: Changes) -> None:
        """Fold a committed flush in; drop everything if over the bound."""
        t = self.tables
        t["campaigns"].update(changes.campaigns)
        t["runs"].update(changes.runs)
        t["batches"].update(changes.batches)
        for key in changes.deleted_batches:
            t["batches"][key] = None
        recipients = t["recipients"]
        for key, row in changes.recipients.items():
            old = recipients.get(key)
            old_mid = old.message_id if old is not None and old is not MISSING else None
            if old_mid != row.message_id:
                run_key = key[:3]
                if old_mid is not None and (old_key := (*run_key, old_mid)) in self.holders:
                    self.holders[old_key].discard(key)
                if row.message_id is not None:
                    new_key = (*run_key, row.message_id)
                    h = self.holders.get(new_key)
                    if h is not None:
                        h.add(key)
                    elif self.complete:
                        self.holders[new_key] = {key}
            recipients[key] = row
        t["messages"].update(changes.messages)
        t["snapshots"].update(changes.snapshots)
        t["attempts"].update(changes.attempts)
        if self.size() > self.max_rows:
            self.clear()

    def size(self) -> int:
        return sum(len(rows) for rows in self.tables.values()) + len(self.holders)

    def clear(self) -> None:
        for rows in self.tables.values():
            rows.clear()
        self.holders.clear()
        self.complete = False
