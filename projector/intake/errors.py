"""Errors of intake: the broker could not be asked."""

from __future__ import annotations


class OffsetsError(RuntimeError):
    """Offsets could not be read (unknown topic, unreachable broker, timeout)."""


class TopicsError(RuntimeError):
    """Topics could not be created; the message names the broker and the reason."""


class PartitionCountError(TopicsError):
    """The source topics differ in partition count: a campaign's events would land
    on different partitions of different topics, and partition p would no longer
    hold one closed set of campaigns. Recreate the topics, or raise every one to
    the same count (``kafka-topics --alter --partitions N``), before starting."""
