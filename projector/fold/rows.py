"""Projection rows: the state the fold reads and writes, one class per table.

Each row keeps, next to the values the API shows, the ordering key of the
event that won it (``*_at`` + ``*_event_id``), so that applying an event is a
comparison against the row alone. That is what makes the fold commutative and
idempotent (F1, F2) without remembering which event ids were seen.

Counters on runs and batches are *maintained*: the fold adds the difference
between a recipient's contribution before and after each change, so reads never
scan recipients.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

RUN_TERMINAL = frozenset({"completed", "failed", "cancelled"})
BATCH_TERMINAL = frozenset({"completed", "failed"})
DLR_TERMINAL = frozenset({"delivered", "undelivered", "expired", "rejected", "failed"})

# Ordering key of the event that set a value: (occurred_at, event_id).
EventKey = tuple[datetime, str]

# Identities (F12): ids are unique only within their parent, so every key
# starts with the campaign's (workspace_id, campaign_id), and every row below
# a run with the run's key. Keys are flat tuples in table-key column order.
CampaignKey = tuple[str, str]  # (workspace_id, campaign_id)
RunKey = tuple[str, str, str]  # (workspace_id, campaign_id, run_id)
# (workspace_id, campaign_id, run_id, kind, label, text, text_null, value)
InsightKey = tuple[str, str, str, str, str, str, bool, int]
BatchKey = tuple[str, str, str, str]  # RunKey + (batch_id,)
RecipientKey = tuple[str, str, str, str]  # RunKey + (recipient_id,)
MessageKey = tuple[str, str, str, str]  # RunKey + (message_id,)
AttemptKey = tuple[str, str, str, str, int]  # RecipientKey + (attempt,)


@dataclass(slots=True)
class CampaignRow:
    workspace_id: str
    campaign_id: str
    name: str | None = None
    channel: str | None = None
    channel_name: str | None = None
    provider: str | None = None
    campaign_type: str | None = None
    defined_at: datetime | None = None
    defined_event_id: str | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> CampaignKey:
        return (self.workspace_id, self.campaign_id)


@dataclass(slots=True)
class RunRow:
    workspace_id: str
    campaign_id: str
    run_id: str
    # run.scheduled (latest occurred_at wins)
    scheduled_at: datetime | None = None
    recipient_count: int = 0
    batch_size: int | None = None
    declared_total_batches: int | None = None
    max_attempts: int | None = None
    scheduled_event_at: datetime | None = None
    scheduled_event_id: str | None = None
    # run.claimed (earliest wins): started_at
    claimed_at: datetime | None = None
    claimed_event_id: str | None = None
    # terminal event (earliest occurred_at, then smallest event_id, wins)
    terminal_status: str | None = None
    terminal_at: datetime | None = None
    terminal_event_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    has_snapshot: bool = False
    updated_at: datetime | None = None
    # maintained counters
    known_recipients: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    delivered: int = 0
    failed_delivery: int = 0
    batches_seen: int = 0
    batches_completed: int = 0
    first_sent_at: datetime | None = None
    last_sent_at: datetime | None = None

    @property
    def key(self) -> RunKey:
        return (self.workspace_id, self.campaign_id, self.run_id)

    @property
    def campaign_key(self) -> CampaignKey:
        return (self.workspace_id, self.campaign_id)

    @property
    def status(self) -> str:
        """Engine status (F3): scheduled < claimed < terminal; never moves back."""
        if self.terminal_status is not None:
            return self.terminal_status
        if self.claimed_at is not None:
            return "claimed"
        return "scheduled"

    @property
    def total_batches(self) -> int:
        """F7: max(declared or derived total, batches seen)."""
        declared = self.declared_total_batches
        if declared is None:
            size = self.batch_size or 1000
            declared = -(-self.recipient_count // size)
        return max(declared, self.batches_seen)

    @property
    def total_recipients(self) -> int:
        """F11: max(recipient_count, recipients known)."""
        return max(self.recipient_count, self.known_recipients)


@dataclass(slots=True)
class BatchRow:
    workspace_id: str
    campaign_id: str
    run_id: str
    batch_id: str
    seen: bool = False  # any batch.* event applied (a submit alone does not list a batch)
    batch_sequence: int | None = None
    recipient_count: int = 0
    created_at: datetime | None = None
    created_event_id: str | None = None
    started_at: datetime | None = None
    started_event_id: str | None = None
    terminal_status: str | None = None
    terminal_at: datetime | None = None
    terminal_event_id: str | None = None
    error_detail: dict[str, Any] | None = None
    sent_count: int = 0
    failed_count: int = 0

    @property
    def key(self) -> BatchKey:
        return (self.workspace_id, self.campaign_id, self.run_id, self.batch_id)

    @property
    def empty(self) -> bool:
        """Named by no batch event and counting no submit: same as absent.

        A retry that wins in another batch can bring a batch known only from
        submits back to this state; keeping the row would make the tables
        depend on arrival order.
        """
        return not self.seen and self.sent_count == 0 and self.failed_count == 0

    @property
    def status(self) -> str:
        """F6: pending < running < terminal."""
        if self.terminal_status is not None:
            return self.terminal_status
        if self.started_at is not None:
            return "running"
        return "pending"


@dataclass(slots=True)
class RecipientRow:
    workspace_id: str
    campaign_id: str
    run_id: str
    recipient_id: str
    # membership from batch.created (smallest batch_sequence wins)
    phone_number: str | None = None
    batch_sequence: int | None = None
    created_batch_id: str | None = None
    # winning submit (F4): highest attempt, then later occurred_at, then larger event_id
    attempt: int | None = None
    submitted_at: datetime | None = None
    submit_event_id: str | None = None
    outcome: str | None = None
    message_id: str | None = None
    submit_batch_id: str | None = None
    submit_phone: str | None = None
    reason: str | None = None
    # the winning report of the winning message, copied from its message row (F5):
    # the recipient's delivery insight (``projector.fold.insight``) is then a function
    # of this row alone
    delivery_status: str | None = None
    delivery_reported_at: datetime | None = None
    delivery_error_code: str | None = None

    @property
    def key(self) -> RecipientKey:
        return (self.workspace_id, self.campaign_id, self.run_id, self.recipient_id)

    @property
    def run_key(self) -> RunKey:
        return (self.workspace_id, self.campaign_id, self.run_id)

    @property
    def sent_at(self) -> datetime | None:
        return self.submitted_at if self.outcome == "sent" else None

    @property
    def recipient_status(self) -> str:
        """F11: pending, skipped, failed, sent, delivered."""
        if self.outcome is None:
            return "pending"
        if self.outcome != "sent":
            return self.outcome
        if self.delivery_status in DLR_TERMINAL:
            return "delivered" if self.delivery_status == "delivered" else "failed"
        return "sent"

    @property
    def message_status(self) -> str | None:
        if self.message_id is None:
            return None
        if self.delivery_status is not None:
            return self.delivery_status
        return "sent" if self.outcome == "sent" else None

    @property
    def display_phone(self) -> str | None:
        return self.phone_number if self.phone_number is not None else self.submit_phone


@dataclass(slots=True)
class InsightRow:
    """How many recipients of a run share one insight fact (``projector.fold.insight``):
    a submit or delivery in a minute, a failure reason, a latency. Maintained by the
    fold like the run's counters, by difference; a count of 0 is no row."""

    workspace_id: str
    campaign_id: str
    run_id: str
    kind: str  # timeline | submit | report | latency | skewed
    label: str  # timeline: the recipient state; submit: the outcome; report: the status
    text: str  # submit: the reason as shown; report: the error code as shown
    text_null: bool  # no reason or error code (not the same as an empty one)
    value: int  # timeline: minutes since the epoch; latency: milliseconds, rounded
    n: int


@dataclass(slots=True)
class AttemptRow:
    """One submit attempt of a recipient (F4 within an attempt: later, then larger id)."""

    workspace_id: str
    campaign_id: str
    run_id: str
    recipient_id: str
    attempt: int
    submitted_at: datetime
    event_id: str
    outcome: str
    message_id: str | None = None
    batch_id: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class MessageRow:
    workspace_id: str
    campaign_id: str
    run_id: str
    message_id: str
    status: str
    reported_at: datetime
    event_id: str
    error_code: str | None = None


@dataclass(slots=True)
class SnapshotRow:
    workspace_id: str
    campaign_id: str
    run_id: str
    event_at: datetime
    event_id: str
    frozen_at: datetime
    channel: str
    provider: str
    sender_id: str
    template: str | None
    personalized: bool
    body: str
    total_cost: float
    currency_units: str
    recipient_count: int
    recipients: list[str] | None = field(default=None)


def _install_clone(cls: type) -> None:
    """Give a slotted row class a ``clone()``: a shallow copy without copy.copy.

    ``copy.copy`` on slotted dataclasses goes through ``__reduce_ex__`` and was
    the fold's top cost in a profile; a generated constructor call is much
    cheaper.
    """
    names = [f.name for f in fields(cls)]
    args = ", ".join(f"self.{n}" for n in names)
    namespace: dict[str, Any] = {"cls": cls}
    exec(f"def clone(self):\n    return cls({args})", namespace)  # noqa: S102 (names are our own fields)
    cls.clone = namespace["clone"]  # type: ignore[attr-defined]


for _cls in (CampaignRow, RunRow, BatchRow, RecipientRow):
    _install_clone(_cls)


def column_names(cls: type) -> tuple[str, ...]:
    """Column order of a row class, shared by the writer and the reader."""
    return tuple(f.name for f in fields(cls))
