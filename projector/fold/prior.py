"""What the fold reads and what it returns: the ``Prior`` interface and ``Changes``.

A store hands the fold the rows a micro-batch may read (``DictPrior``: a
preloaded slice, or the whole in-memory ``State``); the fold returns the new
version of every row it changed. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from projector.fold.rows import (
    AttemptKey,
    AttemptRow,
    BatchKey,
    BatchRow,
    CampaignKey,
    CampaignRow,
    InsightKey,
    MessageKey,
    MessageRow,
    RecipientKey,
    RecipientRow,
    RunKey,
    RunRow,
    SnapshotRow,
)


class Prior(Protocol):
    """Read access to the projection rows as they were before this batch."""

    def campaign(self, key: CampaignKey) -> CampaignRow | None: ...
    def run(self, key: RunKey) -> RunRow | None: ...
    def batch(self, key: BatchKey) -> BatchRow | None: ...
    def recipient(self, key: RecipientKey) -> RecipientRow | None: ...
    def message(self, key: MessageKey) -> MessageRow | None: ...
    def snapshot(self, key: RunKey) -> SnapshotRow | None: ...
    def recipients_with_message(self, key: MessageKey) -> Iterable[RecipientKey]: ...
    def attempt(self, key: AttemptKey) -> AttemptRow | None: ...


class DictPrior:
    """``Prior`` over plain dicts: a store's preloaded slice, or the whole state.

    ``by_message`` maps a message (its run's key and its id) to the
    recipients of that run whose winning submit names it (the reverse index a
    delivery report needs).
    """

    def __init__(self) -> None:
        self.campaigns: dict[CampaignKey, CampaignRow] = {}
        self.runs: dict[RunKey, RunRow] = {}
        self.batches: dict[BatchKey, BatchRow] = {}
        self.recipients: dict[RecipientKey, RecipientRow] = {}
        self.messages: dict[MessageKey, MessageRow] = {}
        self.snapshots: dict[RunKey, SnapshotRow] = {}
        self.by_message: dict[MessageKey, Collection[RecipientKey]] = {}
        self.attempts: dict[AttemptKey, AttemptRow] = {}

    def campaign(self, key: CampaignKey) -> CampaignRow | None:
        return self.campaigns.get(key)

    def run(self, key: RunKey) -> RunRow | None:
        return self.runs.get(key)

    def batch(self, key: BatchKey) -> BatchRow | None:
        return self.batches.get(key)

    def recipient(self, key: RecipientKey) -> RecipientRow | None:
        return self.recipients.get(key)

    def message(self, key: MessageKey) -> MessageRow | None:
        return self.messages.get(key)

    def snapshot(self, key: RunKey) -> SnapshotRow | None:
        return self.snapshots.get(key)

    def recipients_with_message(self, key: MessageKey) -> Iterable[RecipientKey]:
        return self.by_message.get(key, ())

    def attempt(self, key: AttemptKey) -> AttemptRow | None:
        return self.attempts.get(key)


@dataclass
class Changes:
    """New versions of the rows a batch changed, one per key.

    ``sent_range_dirty`` names runs whose ``first_sent_at``/``last_sent_at``
    may have shrunk (a recipient's winning sent submit was replaced): the
    writer recomputes those two values from the run's recipients after
    applying the rows. Growth is folded in directly; only shrinking needs it.
    """

    campaigns: dict[CampaignKey, CampaignRow] = field(default_factory=dict)
    runs: dict[RunKey, RunRow] = field(default_factory=dict)
    batches: dict[BatchKey, BatchRow] = field(default_factory=dict)
    recipients: dict[RecipientKey, RecipientRow] = field(default_factory=dict)
    messages: dict[MessageKey, MessageRow] = field(default_factory=dict)
    snapshots: dict[RunKey, SnapshotRow] = field(default_factory=dict)
    attempts: dict[AttemptKey, AttemptRow] = field(default_factory=dict)
    deleted_batches: set[BatchKey] = field(default_factory=set)
    # How each run's insight counts change (``projector.fold.insight``), never 0.
    insight: dict[InsightKey, int] = field(default_factory=dict)
    sent_range_dirty: set[RunKey] = field(default_factory=set)
    touched_campaigns: set[CampaignKey] = field(default_factory=set)
    events: int = 0

    @property
    def empty(self) -> bool:
        return not (
            self.campaigns
            or self.runs
            or self.batches
            or self.recipients
            or self.messages
            or self.snapshots
            or self.attempts
            or self.deleted_batches
        )
