"""Campaign-level views of the other reference services: stats, metrics, summary, execution.

Same checks as ``api.routes.campaigns`` (their dependencies: scope, existence,
workspace, in that order), same envelope, freshness headers and ETag. Stats and metrics are
cached per campaign position like analytics; summary and execution depend on
the server clock (a scheduled send becomes overdue without any event), so
their ETag also binds the execution state and they are not cached.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api import docs
from api.answers import Payload
from api.deps import AnalyticsRead, CampaignsRead
from api.keys import SCOPE_ANALYTICS
from api.models import CampaignExecution, CampaignMetrics, CampaignStats, CampaignSummary, Envelope
from api.payloads import breakdowns as views_extra
from api.receipts import overdue_of

router = APIRouter(tags=["breakdowns"])


def now_utc() -> datetime:
    """The server clock (a seam for tests)."""
    return datetime.now(UTC)


@router.get(
    "/v1/campaign/{campaign_id}/stats",
    summary="Breakdown: recipients and batches by status, retries, attempts",
    description="Over every run of the campaign: recipients per status (`pending`, `sent` = in "
    "flight, `delivered`, `failed`, `skipped`, `retrying` = a failed submit with attempts left "
    "on a run that is not terminal; the buckets add up to `total`, so `failed` excludes "
    "`retrying`), listed batches per status, recipients by the attempt number of their winning "
    "submit, in-flight and exhausted recipients (failed on their last allowed attempt), and "
    "submit attempts in total and per recipient (2 decimals, 0.0 when none), and "
    "`receipt_overdue`: in-flight recipients sent longer than the receipt window "
    "(`PROJECTOR_RECEIPT_WINDOW`, 72 h) before the campaign's latest event time. "
    "Scope: `analytics:read`.",
    response_model=Envelope[CampaignStats],
    responses=docs.responses(docs.STATS_EXAMPLES, scope=SCOPE_ANALYTICS),
)
async def campaign_stats(read: AnalyticsRead) -> Response:
    remembered = read.reply.remembered(("stats", *read.head.key), read.head.position)
    if remembered is not None:
        return remembered
    return await run_in_threadpool(_stats_from_db, read)


def _stats_from_db(read: AnalyticsRead) -> Response:
    reader, head = read.reader, read.head
    with reader.consistent():

        def build() -> Payload:
            agg = reader.stats_aggregates(head.key)
            runs = reader.runs_of(head.key)
            overdue = overdue_of(reader, head.key, runs, read.reply.ctx.receipt_window)
            return views_extra.stats_payload(
                head.campaign_id,
                runs,
                retrying=agg.retrying,
                exhausted=agg.exhausted,
                retry_breakdown=agg.retry_breakdown,
                batch_counts=agg.batch_counts,
                total_attempts=agg.total_attempts,
                receipt_overdue=sum(overdue.values()),
            )

        return read.reply.cached("stats", head, build)


@router.get(
    "/v1/campaign/{campaign_id}/metrics",
    summary="Pipeline counts of the latest run",
    description="The latest run's (greatest `scheduled_at`) pipeline: `scheduled` "
    "(its recipient_count), `submitted` (recipients with a submit), `sent`, `failed` (winning "
    "submit failed), `skipped`, `delivered`. Zeros and `run_id: null` when there is no run. "
    "Scope: `analytics:read`.",
    response_model=Envelope[CampaignMetrics],
    responses=docs.responses(docs.METRICS_EXAMPLES, scope=SCOPE_ANALYTICS),
)
def campaign_metrics(read: AnalyticsRead) -> Response:
    reader, head = read.reader, read.head
    return read.reply.cached(
        "metrics",
        head,
        lambda: views_extra.metrics_payload(head.campaign_id, reader.runs_of(head.key)),
    )


@router.get(
    "/v1/campaign/{campaign_id}/summary",
    summary="Campaign setup and latest execution (no recipients, no PII)",
    description="Name, type, channel, provider as the latest `campaign.defined` says, the "
    "latest run's schedule and its execution (state as in `/execution`, counts). Nothing "
    "private: no recipients, phone numbers or message body. Scope: `campaigns:read`.",
    response_model=Envelope[CampaignSummary],
    responses=docs.responses(docs.SUMMARY_EXAMPLES),
)
def campaign_summary(read: CampaignsRead) -> Response:
    with read.reader.consistent():
        campaign, position = read.campaign(), read.position()
        body = views_extra.summary_payload(campaign, read.reader.runs_of(read.key), now_utc())
    return read.reply.answer(position, lambda: body, body["latest_execution"]["state"])


@router.get(
    "/v1/campaign/{campaign_id}/execution",
    summary="Execution state of the latest run, with its schedule and counts",
    description="`state`: `not_scheduled` (no run), `scheduled` (the latest run's send time "
    "is in the future by the server clock), `pending_or_overdue` (its send time has passed, "
    "or is unknown, and no worker claimed it), `running`, `completed`, `failed`, `cancelled`. "
    "Scope: `campaigns:read`.",
    response_model=Envelope[CampaignExecution],
    responses=docs.responses(docs.EXECUTION_EXAMPLES),
)
def campaign_execution(read: CampaignsRead) -> Response:
    with read.reader.consistent():
        campaign, position = read.campaign(), read.position()
        body = views_extra.execution_payload(
            read.head.campaign_id, campaign, read.reader.runs_of(read.key), now_utc()
        )
    return read.reply.answer(position, lambda: body, body["state"])
