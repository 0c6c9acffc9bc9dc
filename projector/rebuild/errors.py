"""Errors of rebuilds: replay, its readers, the archive, the swap."""

from __future__ import annotations

from projector.errors import ProjectorError


class ReplayError(ProjectorError):
    """The replay could not run; nothing was published at ``--db``."""


class ReadError(ProjectorError):
    """A reader could not fetch its partitions (the replay fails; nothing is published)."""


class ArchiveError(ProjectorError):
    """The archive folder cannot be read or written."""


class SwapError(ProjectorError):
    """The swap was refused or failed; the old database keeps serving."""


class SwapNotReady(SwapError):
    """The server cannot swap yet (its projector is still starting); retry soon."""
