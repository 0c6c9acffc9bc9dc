"""Response models: the OpenAPI description of the payloads ``api.payloads.campaign`` builds.

Handlers return ready JSON (the views' dicts), so these models cost nothing
per request; they exist for ``/docs`` and for schema fuzzing, and forbid
extra fields so that a payload drifting from its model fails the fuzz test.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal["scheduled", "running", "completed", "failed", "cancelled"]
BatchStatus = Literal["pending", "running", "completed", "failed"]
RecipientStatus = Literal["pending", "sent", "delivered", "failed", "skipped"]
MessageStatus = Literal[
    "sent", "accepted", "buffered", "delivered", "undelivered", "expired", "rejected", "failed"
]

T = TypeVar("T")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorObject(_Model):
    code: str = Field(description="Stable machine-readable code, e.g. CAMPAIGN_NOT_FOUND.")
    message: str = Field(description="Human-readable explanation; never contains internals.")


class Envelope(_Model, Generic[T]):
    success: Literal[True]
    data: T
    errors: None = None
    request_id: str = Field(description="Also in the X-Request-ID header.")


class ErrorEnvelope(_Model):
    success: Literal[False]
    data: Any = Field(default=None, description="null, or details (readiness).")
    errors: list[ErrorObject] = Field(min_length=1)
    request_id: str


class CampaignStatus(_Model):
    """Latest run's status and counters; only campaign_id and status when NO_RUN."""

    campaign_id: str
    campaign_run_id: str | None = None
    status: Literal["scheduled", "running", "completed", "failed", "cancelled", "NO_RUN"]
    current_batch: int | None = Field(default=None, description="Completed batches.")
    total_batches: int | None = None
    recipient_count: int | None = None
    sent: int | None = None
    failed: int | None = None
    skipped: int | None = None
    delivered: int | None = None
    receipt_overdue: int | None = Field(
        default=None,
        description="Sent recipients still without a terminal delivery report, sent longer "
        "than the receipt window (PROJECTOR_RECEIPT_WINDOW, 72 h) before the campaign's latest "
        "event time. Part of the pending deliveries (sent - delivered - failed deliveries).",
    )
    updated_at: datetime | None = None


class CampaignAnalytics(_Model):
    campaign_id: str
    campaign_run_id: str | None
    workspace_id: str | None
    total_recipients: int
    sent_count: int
    failed_count: int
    skipped_count: int
    cancelled_count: int
    delivered_count: int
    failed_delivery_count: int
    pending_delivery_count: int
    receipt_overdue_count: int = Field(
        description="Of pending_delivery_count: sent longer than the receipt window "
        "(PROJECTOR_RECEIPT_WINDOW, 72 h) before the campaign's latest event time."
    )
    delivery_rate: float | None = Field(
        description="delivered / sent, 0.0-1.0; null when sent = 0."
    )
    failure_rate: float | None = Field(description="failed / total, 0.0-1.0; null when total = 0.")
    first_sent_at: datetime | None
    last_sent_at: datetime | None
    completed_at: datetime | None


class RunError(_Model):
    code: str
    message: str | None


class RunInfo(_Model):
    id: str
    campaign_id: str
    status: RunStatus
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    current_batch: int
    total_batches: int
    recipient_count: int
    batch_size: int | None
    max_attempts: int | None
    sent: int
    failed: int
    skipped: int
    delivered: int
    failed_delivery: int
    has_snapshot: bool
    error: RunError | None
    updated_at: datetime | None


class SnapshotSummary(_Model):
    provider: str
    sender_id: str
    channel: str
    template: str | None
    personalized: bool
    frozen_at: datetime


class BatchInfo(_Model):
    id: str
    batch_sequence: int | None
    status: BatchStatus
    recipient_count: int
    sent_count: int
    failed_count: int
    started_at: datetime | None
    completed_at: datetime | None
    error_detail: dict[str, Any] | None


class RecipientInfo(_Model):
    recipient_id: str
    phone_number: str | None
    recipient_status: RecipientStatus
    message_id: str | None
    message_status: MessageStatus | None
    sent_at: datetime | None


class RecipientSummary(_Model):
    total: int
    pending: int
    sent: int
    delivered: int
    failed: int
    skipped: int


class RunDetail(_Model):
    run: RunInfo
    campaign_name: str | None
    channel_name: str | None
    channel_provider: str | None
    snapshot: SnapshotSummary | None
    batches: list[BatchInfo]
    recipients: list[RecipientInfo] = Field(max_length=500)
    recipients_truncated: bool
    recipient_summary: RecipientSummary


class SnapshotContent(_Model):
    channel: str
    provider: str
    sender_id: str
    template: str | None
    personalized: bool
    body: str


class SnapshotCost(_Model):
    total_cost: float = Field(description="In currency_units (service units), never money.")
    currency_units: str


class RunSnapshot(_Model):
    run_id: str
    campaign_id: str
    recipient_count: int
    content: SnapshotContent
    cost: SnapshotCost
    frozen_at: datetime
    status: RunStatus
    started_at: datetime | None
    completed_at: datetime | None
    recipients: list[str] | None = Field(
        default=None, description="Only with include_recipients=true and the pii:read scope."
    )


class Health(_Model):
    status: Literal["ok"]


class NodePartitions(_Model):
    """This node's share of a group of nodes (absent on a single node)."""

    url: str = Field(description="This node's advertised base URL.")
    settled: bool = Field(
        description="False while the group rebalances: no owner is named until it settles."
    )
    owned: list[int] = Field(description="Partitions this node owns (latest assignment).")
    restoring: list[int] = Field(
        default_factory=list,
        description="Owned partitions still catching up to their last owner's offsets: "
        "their campaigns answer 503 with Retry-After until then.",
    )
    lag: dict[str, int] = Field(
        description="Records behind the log end per owned partition, all source topics summed."
    )
    lease_lost: str | None = Field(
        default=None,
        description="Set while this node was paused (or its loop blocked) past the group's "
        "session: it answers for and writes to no partition (503 with Retry-After) until "
        "the group has reassigned them. Why, with the pause's length.",
    )


class Readiness(_Model):
    ready: bool
    mode: str
    flush_seq: int
    lag: int | None
    watermark: str
    inconsistent: dict[str, str]
    last_error: str | None = None
    cluster: NodePartitions | None = None


class ClusterView(_Model):
    """Every partition's owner as this node sees the group."""

    url: str | None = Field(description="This node's advertised base URL; null on a single node.")
    partitions: int | None = Field(description="Partition count of the source topics.")
    settled: bool = Field(description="True when every partition has a known owner.")
    owners: dict[str, str | None] = Field(
        description="Partition -> owner URL; null while unknown (rebalancing). "
        "Empty on a single node, which owns every partition."
    )


# -- breakdowns, pages and lists ------------------------------------------------------------

RunOutcome = Literal[
    "scheduled", "running", "completed", "completed_with_errors", "failed", "cancelled"
]
ExecutionState = Literal[
    "not_scheduled",
    "scheduled",
    "pending_or_overdue",
    "running",
    "completed",
    "failed",
    "cancelled",
]


class PageMeta(_Model):
    total: int = Field(ge=0, description="Items matching the query (all pages).")
    limit: int = Field(ge=1, description="Page size used.")
    offset: int = Field(ge=0, description="Items skipped before this page.")


class PagedEnvelope(_Model, Generic[T]):
    """The envelope of list endpoints: ``data`` is one page, ``meta`` tells the total."""

    success: Literal[True]
    data: list[T]
    meta: PageMeta
    errors: None = None
    request_id: str = Field(description="Also in the X-Request-ID header.")


class RecipientBuckets(_Model):
    """Recipients by status; the buckets add up to ``total``."""

    total: int
    pending: int = Field(description="No submit yet (includes recipients not yet named).")
    sent: int = Field(description="Sent, no terminal delivery report yet (in flight).")
    delivered: int
    failed: int = Field(description="Failed submit with no attempt left, or failed delivery.")
    skipped: int
    retrying: int = Field(
        description="Failed submit with attempts left on a run that is not terminal."
    )


class BucketCounters(_Model):
    pending: int
    sent: int
    delivered: int
    failed: int
    skipped: int
    retrying: int


class BatchCounts(_Model):
    pending: int
    running: int
    completed: int
    failed: int


class RetryBucket(_Model):
    attempt: int = Field(ge=1, description="Attempt number of the winning submit.")
    recipients: int


class AttemptTotals(_Model):
    total: int = Field(description="Submit attempts recorded (every attempt of every recipient).")
    average_per_recipient: float = Field(
        description="total / recipients, 2 decimals; 0.0 when there are none."
    )


class CampaignStats(_Model):
    campaign_id: str
    run_count: int
    recipient_counts: RecipientBuckets
    batch_counts: BatchCounts
    retry_breakdown: list[RetryBucket]
    in_flight: int = Field(description="Sent recipients without a terminal delivery report.")
    exhausted: int = Field(description="Recipients whose last allowed attempt failed.")
    receipt_overdue: int = Field(
        description="Of in_flight: sent longer than the receipt window (72 h) before the "
        "campaign's latest event time."
    )
    attempts: AttemptTotals


class BatchListItem(_Model):
    batch_id: str
    run_id: str
    batch_sequence: int | None
    status: BatchStatus
    recipient_count: int
    sent_count: int = Field(description="Recipients whose winning submit names this batch (sent).")
    failed_count: int
    counters: BucketCounters = Field(description="Live: the batch's recipients by status.")
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    error_detail: dict[str, Any] | None


class AttemptInfo(_Model):
    attempt: int
    outcome: Literal["sent", "failed", "skipped"]
    message_id: str | None
    batch_id: str | None
    submitted_at: datetime | None
    reason: str | None
    delivery_status: MessageStatus | None = Field(
        description="The message's winning delivery report; null before any."
    )
    delivery_reported_at: datetime | None


class RecipientListItem(_Model):
    recipient_id: str
    phone_number: str | None = Field(
        description="E.164 digits with pii:read; otherwise masked but the last 3 digits."
    )
    batch_id: str | None
    batch_sequence: int | None
    recipient_status: RecipientStatus
    attempt: int | None = Field(description="Attempt number of the winning submit.")
    message_id: str | None
    message_status: MessageStatus | None
    sent_at: datetime | None
    attempts: list[AttemptInfo]


class RunRef(_Model):
    run_id: str
    status: RunStatus
    outcome: RunOutcome
    run_number: int


class CampaignListItem(_Model):
    campaign_id: str
    name: str | None
    channel: str | None
    channel_name: str | None
    run_count: int
    last_run_at: datetime | None = Field(description="When the latest started run started.")
    latest_run: RunRef | None
    delivery_rate: float | None = Field(
        default=None,
        description="delivered / sent over every run, 0.0-1.0, as the analytics view's; "
        "null when nothing was sent.",
    )


class RunHistoryItem(_Model):
    run_id: str
    run_number: int
    status: RunStatus
    outcome: RunOutcome
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    recipient_count: int
    total_recipients: int
    sent: int
    failed: int
    skipped: int
    delivered: int
    failed_delivery: int
    error: RunError | None


class PipelineCounts(_Model):
    scheduled: int = Field(description="recipient_count of the run.")
    submitted: int = Field(description="Recipients with a submit (sent + failed + skipped).")
    sent: int
    failed: int = Field(description="Recipients whose winning submit failed.")
    skipped: int
    delivered: int


class ScheduleInfo(_Model):
    run_id: str
    scheduled_at: datetime | None
    scheduled: bool = Field(description="True while the send is in the future.")


class ExecutionRun(_Model):
    run_id: str
    run_number: int
    status: RunStatus
    outcome: RunOutcome
    started_at: datetime | None
    completed_at: datetime | None
    counts: PipelineCounts


class CampaignExecution(_Model):
    campaign_id: str
    name: str | None
    state: ExecutionState
    schedule: ScheduleInfo | None
    last_execution: ExecutionRun | None


class LatestExecution(_Model):
    state: ExecutionState
    run: ExecutionRun | None


class CampaignSummary(_Model):
    campaign_id: str
    name: str | None
    campaign_type: str | None
    channel: str | None
    channel_name: str | None
    provider: str | None
    updated_at: datetime | None
    run_count: int
    schedule: ScheduleInfo | None
    latest_execution: LatestExecution


class CampaignMetrics(_Model):
    campaign_id: str
    run_id: str | None
    counts: PipelineCounts


# -- delivery insight (api.routes.insight) ------------------------------------------------------


class TimelineCounts(_Model):
    sent: int = Field(description="Recipients whose winning submit is `sent`.")
    failed: int = Field(description="Recipients whose winning submit is `failed`.")
    skipped: int = Field(description="Recipients whose winning submit is `skipped`.")
    delivered: int = Field(description="Sent recipients whose winning report is `delivered`.")
    failed_delivery: int = Field(
        description="Sent recipients whose winning report is terminal and not delivered."
    )


class TimelineBucket(_Model):
    start: datetime = Field(description="Start of the bucket (UTC, aligned on its width).")
    counts: TimelineCounts = Field(description="Winning events whose time falls in the bucket.")
    cumulative: TimelineCounts = Field(description="Up to the end of the bucket.")


class RunTimeline(_Model):
    campaign_id: str
    run_id: str
    bucket: Literal["1m", "5m", "1h"]
    bucket_seconds: int
    totals: TimelineCounts = Field(description="Equal to the run's counters.")
    buckets: list[TimelineBucket] = Field(
        description="Buckets holding at least one event, in time order."
    )


class FailureOther(_Model):
    count: int = Field(description="Recipients in the groups past the listed ones.")
    groups: int = Field(description="How many groups were folded into `other`.")


class SubmitFailure(_Model):
    outcome: Literal["failed", "skipped"]
    reason: str | None = Field(
        description="Producer text: control characters as spaces, at most 200 characters. "
        "Never trust it as HTML."
    )
    count: int


class ReportFailure(_Model):
    status: Literal["undelivered", "expired", "rejected", "failed"]
    error_code: str | None = Field(
        description="Producer text: control characters as spaces, at most 64 characters."
    )
    count: int


class SubmitFailures(_Model):
    total: int = Field(description="Recipients whose winning submit failed or was skipped.")
    items: list[SubmitFailure]
    other: FailureOther


class ReportFailures(_Model):
    total: int = Field(description="Sent recipients whose winning report is terminal, "
                       "not delivered.")
    items: list[ReportFailure]
    other: FailureOther


class CampaignFailures(_Model):
    campaign_id: str
    run_id: str | None = Field(description="The run asked for; null: every run.")
    limit: int = Field(description="Groups listed per list before `other`.")
    submits: SubmitFailures
    reports: ReportFailures


class LatencyBucket(_Model):
    from_ms: int
    to_ms: int | None = Field(description="Exclusive; null for the open-ended last bucket.")
    count: int


class RunLatency(_Model):
    campaign_id: str
    run_id: str
    exact: bool = Field(
        description="Every value is exact: true when no delivered recipient took 10 s or "
        "more. Latencies of 10 s or more keep 4 significant digits (rounded down by less "
        "than 0.1%); percentiles are by nearest rank over those values, never estimated."
    )
    delivered: int = Field(description="Delivered recipients measured.")
    clock_skewed: int = Field(
        description="Of those, reports stamped before their submit (counted as 0 ms)."
    )
    min_ms: int | None
    p50_ms: int | None
    p90_ms: int | None
    p99_ms: int | None
    max_ms: int | None
    histogram: list[LatencyBucket]
