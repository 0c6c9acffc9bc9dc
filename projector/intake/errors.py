"""Errors of intake: the broker could not be asked."""

from __future__ import annotations


class OffsetsError(RuntimeError):
    """Offsets could not be read (unknown topic, unreachable broker, timeout)."""


class TopicsError(RuntimeError):
    """Topics could not be created; the message names the broker and the reason."""
