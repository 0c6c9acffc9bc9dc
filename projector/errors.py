"""Errors of the projector package."""


class ProjectorError(Exception):
    """Root of the projector's own errors."""


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
