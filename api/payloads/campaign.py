"""API payloads built from projection rows: the one place output shapes live.

Pure functions shared by the HTTP API, the golden tests and the stream. Field
names and semantics follow the primary reference (Briq) and F9-F11.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from projector.fold.rows import BatchRow, CampaignRow, RecipientRow, RunRow, SnapshotRow

RECIPIENTS_CAP = 500


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and ``Z`` (contract output format)."""
    if ts is None:
        return None
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def api_status(engine_status: str) -> str:
    """The engine's internal ``claimed`` is shown as ``running``."""
    return "running" if engine_status == "claimed" else engine_status


def rate(numerator: int, divisor: int) -> float | None:
    """0.0-1.0 rounded to 4 decimals; null when the divisor is 0 (F9)."""
    return None if divisor == 0 else round(numerator / divisor, 4)


def latest_run(runs: Iterable[RunRow]) -> RunRow | None:
    """F9: greatest scheduled_at, tie larger run_id; unscheduled runs rank lowest."""
    best: RunRow | None = None
    best_key: tuple[Any, ...] = ()
    for run in runs:
        key = (
            run.scheduled_at is not None,
            run.scheduled_at or datetime.min.replace(tzinfo=UTC),
            run.run_id,
        )
        if best is None or key > best_key:
            best, best_key = run, key
    return best


def status_payload(
    campaign_id: str, run: RunRow | None, receipt_overdue: int = 0
) -> dict[str, Any]:
    """``receipt_overdue``: the run's sent recipients whose receipt is overdue
    (``api.receipts``); 0 unless the run rows say some may be.
    """
    if run is None:
        return {"campaign_id": campaign_id, "status": "NO_RUN"}
    return {
        "campaign_id": campaign_id,
        "campaign_run_id": run.run_id,
        "status": api_status(run.status),
        "current_batch": run.batches_completed,
        "total_batches": run.total_batches,
        "recipient_count": run.recipient_count,
        "sent": run.sent,
        "failed": run.failed,
        "skipped": run.skipped,
        "delivered": run.delivered,
        "receipt_overdue": receipt_overdue,
        "updated_at": iso(run.updated_at),
    }


def analytics_payload(
    campaign_id: str, workspace_id: str | None, runs: list[RunRow], receipt_overdue: int = 0
) -> dict[str, Any]:
    """``receipt_overdue``: over every run, as in ``status_payload``."""
    latest = latest_run(runs)
    total = sum(r.total_recipients for r in runs)
    sent = sum(r.sent for r in runs)
    failed = sum(r.failed for r in runs)
    delivered = sum(r.delivered for r in runs)
    failed_delivery = sum(r.failed_delivery for r in runs)
    firsts = [r.first_sent_at for r in runs if r.first_sent_at is not None]
    lasts = [r.last_sent_at for r in runs if r.last_sent_at is not None]
    return {
        "campaign_id": campaign_id,
        "campaign_run_id": latest.run_id if latest is not None else None,
        "workspace_id": workspace_id,
        "total_recipients": total,
        "sent_count": sent,
        "failed_count": failed,
        "skipped_count": sum(r.skipped for r in runs),
        "cancelled_count": sum(
            max(0, r.recipient_count - r.sent - r.failed - r.skipped)
            for r in runs
            if r.status == "cancelled"
        ),
        "delivered_count": delivered,
        "failed_delivery_count": failed_delivery,
        "pending_delivery_count": sent - delivered - failed_delivery,
        "receipt_overdue_count": receipt_overdue,
        "delivery_rate": rate(delivered, sent),
        "failure_rate": rate(failed, total),
        "first_sent_at": iso(min(firsts)) if firsts else None,
        "last_sent_at": iso(max(lasts)) if lasts else None,
        "completed_at": iso(latest.terminal_at) if latest is not None else None,
    }


def run_error(run: RunRow) -> dict[str, Any] | None:
    """The run's error as the API shows it (code and message), or None."""
    if run.error_code is None:
        return None
    return {"code": run.error_code, "message": run.error_message}


def run_payload(run: RunRow) -> dict[str, Any]:
    return {
        "id": run.run_id,
        "campaign_id": run.campaign_id,
        "status": api_status(run.status),
        "scheduled_at": iso(run.scheduled_at),
        "started_at": iso(run.claimed_at),
        "completed_at": iso(run.terminal_at),
        "current_batch": run.batches_completed,
        "total_batches": run.total_batches,
        "recipient_count": run.recipient_count,
        "batch_size": run.batch_size,
        "max_attempts": run.max_attempts,
        "sent": run.sent,
        "failed": run.failed,
        "skipped": run.skipped,
        "delivered": run.delivered,
        "failed_delivery": run.failed_delivery,
        "has_snapshot": run.has_snapshot,
        "error": run_error(run),
        "updated_at": iso(run.updated_at),
    }


def recipient_summary(run: RunRow) -> dict[str, int]:
    """F11 counts by recipient_status, exact from the maintained counters."""
    total = run.total_recipients
    submitted = run.sent + run.failed + run.skipped
    return {
        "total": total,
        "pending": total - submitted,
        "sent": run.sent - run.delivered - run.failed_delivery,
        "delivered": run.delivered,
        "failed": run.failed + run.failed_delivery,
        "skipped": run.skipped,
    }


def batch_sort_key(b: BatchRow) -> tuple[Any, ...]:
    return (b.batch_sequence is None, b.batch_sequence or 0, b.batch_id)


def batch_payload(b: BatchRow) -> dict[str, Any]:
    return {
        "id": b.batch_id,
        "batch_sequence": b.batch_sequence,
        "status": b.status,
        "recipient_count": b.recipient_count,
        "sent_count": b.sent_count,
        "failed_count": b.failed_count,
        "started_at": iso(b.started_at),
        "completed_at": iso(b.terminal_at),
        "error_detail": b.error_detail,
    }


def recipient_sort_key(r: RecipientRow) -> tuple[Any, ...]:
    """F11: by batch_sequence, then recipient_id (unknown sequence last).

    ``r.batch_sequence`` must be the listed one (``listed_recipients``; the
    API's queries select it so).
    """
    return (r.batch_sequence is None, r.batch_sequence or 0, r.recipient_id)


def listed_recipients(
    recipients: Iterable[RecipientRow], batches: Iterable[BatchRow]
) -> list[RecipientRow]:
    """A run's recipients in F11 order, each with the batch_sequence F11 lists it by.

    A recipient's batch is the one whose batch.created names it (its row's
    ``batch_sequence``), else the batch of its winning submit, whose sequence
    it takes once that batch's batch.created is known. The rows are copies.
    """
    sequence = {b.batch_id: b.batch_sequence for b in batches}
    out = []
    for r in recipients:
        if r.batch_sequence is None and r.submit_batch_id is not None:
            r = r.clone()  # type: ignore[attr-defined]
            r.batch_sequence = sequence.get(r.submit_batch_id)
        out.append(r)
    out.sort(key=recipient_sort_key)
    return out


def recipient_payload(r: RecipientRow) -> dict[str, Any]:
    return {
        "recipient_id": r.recipient_id,
        "phone_number": r.display_phone,
        "recipient_status": r.recipient_status,
        "message_id": r.message_id,
        "message_status": r.message_status,
        "sent_at": iso(r.sent_at),
    }


def snapshot_summary(s: SnapshotRow | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "provider": s.provider,
        "sender_id": s.sender_id,
        "channel": s.channel,
        "template": s.template,
        "personalized": s.personalized,
        "frozen_at": iso(s.frozen_at),
    }


def run_detail_payload(
    campaign: CampaignRow | None,
    run: RunRow,
    snapshot: SnapshotRow | None,
    batches: Iterable[BatchRow],
    recipients: list[RecipientRow],
    more_recipients: bool,
) -> dict[str, Any]:
    """The composite run detail; ``recipients`` already sorted and capped by the caller."""
    provider = (
        snapshot.provider if snapshot is not None else (campaign.provider if campaign else None)
    )
    return {
        "run": run_payload(run),
        "campaign_name": campaign.name if campaign is not None else None,
        "channel_name": campaign.channel_name if campaign is not None else None,
        "channel_provider": provider,
        "snapshot": snapshot_summary(snapshot),
        "batches": [
            batch_payload(b) for b in sorted((b for b in batches if b.seen), key=batch_sort_key)
        ],
        "recipients": [recipient_payload(r) for r in recipients],
        "recipients_truncated": more_recipients,
        "recipient_summary": recipient_summary(run),
    }


def snapshot_payload(run: RunRow, s: SnapshotRow, include_recipients: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "run_id": run.run_id,
        "campaign_id": run.campaign_id,
        "recipient_count": s.recipient_count,
        "content": {
            "channel": s.channel,
            "provider": s.provider,
            "sender_id": s.sender_id,
            "template": s.template,
            "personalized": s.personalized,
            "body": s.body,
        },
        "cost": {"total_cost": s.total_cost, "currency_units": s.currency_units},
        "frozen_at": iso(s.frozen_at),
        "status": api_status(run.status),
        "started_at": iso(run.claimed_at),
        "completed_at": iso(run.terminal_at),
    }
    if include_recipients:
        data["recipients"] = list(s.recipients or [])
    return data
