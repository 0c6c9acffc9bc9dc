"""Errors of the store: the DuckDB file and what the writer keeps beside it."""

from __future__ import annotations

from projector.errors import ProjectorError


class StoreError(ProjectorError):
    """DuckDB could not be read or written. The flush was rolled back; the
    stored offsets still point at the first unapplied record, so retrying (or
    restarting) loses nothing."""


class StoreLockedError(StoreError):
    """Another process holds the DuckDB file. Stop it, or serve a copy with
    ``projector api --db COPY``."""


class StoreVersionError(StoreError):
    """The database was built with another projection layout
    (``tables.SCHEMA_VERSION``). Its rows would be misread: rebuild it."""


class InvariantError(ProjectorError):
    """After a flush the writer's memory (the campaign heads and runs that
    status and analytics are answered from) differs from DuckDB. A bug, found
    by ``PROJECTOR_CHECK_INVARIANTS``: the process stops rather than answer
    from memory. DuckDB holds the truth and a restart reloads memory from it;
    report the message, which names the campaign, the flush and both values."""


class VerifyError(ProjectorError):
    """A database could not be opened or is not a projector database."""
