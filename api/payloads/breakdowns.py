"""Payloads of the breakdown, list and execution views: pure, from rows and aggregates.

The other reference services' views (stats, batch and recipient pages,
campaign lists, run history, summary, execution state, pipeline metrics),
built like ``api.payloads.campaign``: rows in, JSON-ready dicts out, no I/O. The
SQL aggregates they need (per-status counts that the fold does not maintain)
are passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, get_args

from api.models import ExecutionState
from api.payloads.campaign import (
    api_status,
    iso,
    latest_run,
    rate,
    recipient_summary,
    run_error,
)
from projector.fold.rows import BatchRow, CampaignRow, RecipientRow, RunRow

# Per-status recipient buckets of the breakdowns: F11's statuses plus
# ``retrying`` (a failed submit with attempts left on a run still going),
# which is taken out of ``failed`` so that the buckets add up to the total.
RECIPIENT_BUCKETS = ("pending", "sent", "delivered", "failed", "skipped", "retrying")
BATCH_STATUSES = ("pending", "running", "completed", "failed")
EXECUTION_STATES: tuple[str, ...] = get_args(ExecutionState)
RUN_HISTORY_MAX = 50


def run_numbers(runs: Iterable[RunRow]) -> dict[str, int]:
    """1-based run numbers: by scheduled_at (unscheduled first, as F9 ranks them), then run_id.

    The latest run of F9 (``views.latest_run``) always has the highest number.
    """
    never = datetime.min.replace(tzinfo=UTC)
    ordered = sorted(
        runs, key=lambda r: (r.scheduled_at is not None, r.scheduled_at or never, r.run_id)
    )
    return {r.run_id: n for n, r in enumerate(ordered, 1)}


def run_outcome(run: RunRow) -> str:
    """The API status, or ``completed_with_errors`` for a completed run with any
    submit failure (winning outcome ``failed``) or delivery failure."""
    status = api_status(run.status)
    if status == "completed" and (run.failed > 0 or run.failed_delivery > 0):
        return "completed_with_errors"
    return status


def mask_phone(phone: str | None) -> str | None:
    """All but the last 3 characters replaced by ``*`` (all of them when 3 or fewer)."""
    if phone is None:
        return None
    keep = 3 if len(phone) > 3 else 0
    return "*" * (len(phone) - keep) + phone[len(phone) - keep :]


# -- stats ---------------------------------------------------------------------


def stats_payload(
    campaign_id: str,
    runs: Sequence[RunRow],
    *,
    retrying: int,
    exhausted: int,
    retry_breakdown: Mapping[int, int],
    batch_counts: Mapping[str, int],
    total_attempts: int,
    receipt_overdue: int = 0,
) -> dict[str, Any]:
    """Breakdown over every run of a campaign.

    Counts that the fold maintains come from the run rows; ``retrying``,
    ``exhausted``, the retry breakdown, batch counts and attempts are SQL
    aggregates passed in; ``receipt_overdue`` too (``api.receipts``), a part of
    ``in_flight``.
    """
    buckets = dict.fromkeys(RECIPIENT_BUCKETS, 0)
    total = 0
    for run in runs:
        summary = recipient_summary(run)
        total += summary["total"]
        for k in ("pending", "sent", "delivered", "failed", "skipped"):
            buckets[k] += summary[k]
    buckets["failed"] -= retrying
    buckets["retrying"] = retrying
    return {
        "campaign_id": campaign_id,
        "run_count": len(runs),
        "recipient_counts": {"total": total, **buckets},
        "batch_counts": {s: int(batch_counts.get(s, 0)) for s in BATCH_STATUSES},
        "retry_breakdown": [
            {"attempt": a, "recipients": n} for a, n in sorted(retry_breakdown.items())
        ],
        "in_flight": buckets["sent"],
        "receipt_overdue": receipt_overdue,
        "exhausted": exhausted,
        "attempts": {
            "total": total_attempts,
            "average_per_recipient": round(total_attempts / total, 2) if total else 0.0,
        },
    }


# -- batches -------------------------------------------------------------------


def batch_item(b: BatchRow, counters: Mapping[str, int] | None) -> dict[str, Any]:
    """A batch with its maintained F6 counters and live per-status recipient counters."""
    return {
        "batch_id": b.batch_id,
        "run_id": b.run_id,
        "batch_sequence": b.batch_sequence,
        "status": b.status,
        "recipient_count": b.recipient_count,
        "sent_count": b.sent_count,
        "failed_count": b.failed_count,
        "counters": {k: int((counters or {}).get(k, 0)) for k in RECIPIENT_BUCKETS},
        "created_at": iso(b.created_at),
        "started_at": iso(b.started_at),
        "completed_at": iso(b.terminal_at),
        "error_detail": b.error_detail,
    }


# -- recipients ----------------------------------------------------------------


def attempt_item(
    attempt: int,
    outcome: str,
    message_id: str | None,
    batch_id: str | None,
    submitted_at: datetime | None,
    reason: str | None,
    delivery_status: str | None,
    delivery_reported_at: datetime | None,
) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "outcome": outcome,
        "message_id": message_id,
        "batch_id": batch_id,
        "submitted_at": iso(submitted_at),
        "reason": reason,
        "delivery_status": delivery_status,
        "delivery_reported_at": iso(delivery_reported_at),
    }


def recipient_item(
    r: RecipientRow, attempts: list[dict[str, Any]], *, show_phone: bool
) -> dict[str, Any]:
    phone = r.display_phone
    return {
        "recipient_id": r.recipient_id,
        "phone_number": phone if show_phone else mask_phone(phone),
        "batch_id": r.created_batch_id if r.created_batch_id is not None else r.submit_batch_id,
        "batch_sequence": r.batch_sequence,
        "recipient_status": r.recipient_status,
        "attempt": r.attempt,
        "message_id": r.message_id,
        "message_status": r.message_status,
        "sent_at": iso(r.sent_at),
        "attempts": attempts,
    }


CSV_COLUMNS = (
    "recipient_id",
    "phone_number",
    "batch_sequence",
    "batch_id",
    "recipient_status",
    "attempt",
    "attempts",
    "outcome",
    "reason",
    "message_id",
    "message_status",
    "submitted_at",
    "sent_at",
)


def recipient_csv_row(r: RecipientRow, attempts: int) -> list[Any]:
    """One CSV line (``CSV_COLUMNS``); ``attempts`` = submit attempts recorded."""
    return [
        r.recipient_id,
        r.display_phone or "",
        r.batch_sequence if r.batch_sequence is not None else "",
        r.created_batch_id or r.submit_batch_id or "",
        r.recipient_status,
        r.attempt if r.attempt is not None else "",
        attempts,
        r.outcome or "",
        r.reason or "",
        r.message_id or "",
        r.message_status or "",
        iso(r.submitted_at) or "",
        iso(r.sent_at) or "",
    ]


# -- campaigns and runs --------------------------------------------------------


def run_ref(run: RunRow | None, numbers: Mapping[str, int]) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "run_id": run.run_id,
        "status": api_status(run.status),
        "outcome": run_outcome(run),
        "run_number": numbers[run.run_id],
    }


def campaign_item(c: CampaignRow, runs: Sequence[RunRow]) -> dict[str, Any]:
    """A campaign of the list: latest run (F9) and the last time a run started."""
    numbers = run_numbers(runs)
    started = [r.claimed_at for r in runs if r.claimed_at is not None]
    return {
        "campaign_id": c.campaign_id,
        "name": c.name,
        "channel": c.channel,
        "channel_name": c.channel_name,
        "run_count": len(runs),
        "last_run_at": iso(max(started)) if started else None,
        "latest_run": run_ref(latest_run(runs), numbers),
        # The list page shows it per row: carried here rather than one analytics call a row.
        "delivery_rate": rate(sum(r.delivered for r in runs), sum(r.sent for r in runs)),
    }


def pipeline_counts(run: RunRow | None) -> dict[str, int]:
    """Latest run's pipeline counts; zeros without a run."""
    if run is None:
        return dict.fromkeys(
            ("scheduled", "submitted", "sent", "failed", "skipped", "delivered"), 0
        )
    return {
        "scheduled": run.recipient_count,
        "submitted": run.sent + run.failed + run.skipped,
        "sent": run.sent,
        "failed": run.failed,
        "skipped": run.skipped,
        "delivered": run.delivered,
    }


def run_history_item(run: RunRow, number: int) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "run_number": number,
        "status": api_status(run.status),
        "outcome": run_outcome(run),
        "scheduled_at": iso(run.scheduled_at),
        "started_at": iso(run.claimed_at),
        "completed_at": iso(run.terminal_at),
        "recipient_count": run.recipient_count,
        "total_recipients": run.total_recipients,
        "sent": run.sent,
        "failed": run.failed,
        "skipped": run.skipped,
        "delivered": run.delivered,
        "failed_delivery": run.failed_delivery,
        "error": run_error(run),
    }


def run_history(runs: Sequence[RunRow], limit: int, offset: int) -> list[dict[str, Any]]:
    """Newest first (highest run number first), one page."""
    numbers = run_numbers(runs)
    ordered = sorted(runs, key=lambda r: numbers[r.run_id], reverse=True)
    return [run_history_item(r, numbers[r.run_id]) for r in ordered[offset : offset + limit]]


def execution_state(run: RunRow | None, now: datetime) -> str:
    """Experiture's execution state of the latest run.

    ``pending_or_overdue``: not claimed and its scheduled time has passed by
    ``now`` (or is unknown: the run is known only from later events).
    """
    if run is None:
        return "not_scheduled"
    status = api_status(run.status)
    if status != "scheduled":
        return status
    if run.scheduled_at is not None and run.scheduled_at > now:
        return "scheduled"
    return "pending_or_overdue"


def execution_payload(
    campaign_id: str, campaign: CampaignRow | None, runs: Sequence[RunRow], now: datetime
) -> dict[str, Any]:
    latest = latest_run(runs)
    state = execution_state(latest, now)
    schedule = None
    last = None
    if latest is not None:
        numbers = run_numbers(runs)
        schedule = {
            "run_id": latest.run_id,
            "scheduled_at": iso(latest.scheduled_at),
            "scheduled": state == "scheduled",
        }
        last = {
            "run_id": latest.run_id,
            "run_number": numbers[latest.run_id],
            "status": api_status(latest.status),
            "outcome": run_outcome(latest),
            "started_at": iso(latest.claimed_at),
            "completed_at": iso(latest.terminal_at),
            "counts": pipeline_counts(latest),
        }
    return {
        "campaign_id": campaign_id,
        "name": campaign.name if campaign is not None else None,
        "state": state,
        "schedule": schedule,
        "last_execution": last,
    }


def summary_payload(campaign: CampaignRow, runs: Sequence[RunRow], now: datetime) -> dict[str, Any]:
    """Setup as known from the events; nothing private (no recipients, no phones, no body)."""
    execution = execution_payload(campaign.campaign_id, campaign, runs, now)
    return {
        "campaign_id": campaign.campaign_id,
        "name": campaign.name,
        "campaign_type": campaign.campaign_type,
        "channel": campaign.channel,
        "channel_name": campaign.channel_name,
        "provider": campaign.provider,
        "updated_at": iso(campaign.updated_at),
        "run_count": len(runs),
        "schedule": execution["schedule"],
        "latest_execution": {"state": execution["state"], "run": execution["last_execution"]},
    }


def metrics_payload(campaign_id: str, runs: Sequence[RunRow]) -> dict[str, Any]:
    latest = latest_run(runs)
    return {
        "campaign_id": campaign_id,
        "run_id": latest.run_id if latest is not None else None,
        "counts": pipeline_counts(latest),
    }
