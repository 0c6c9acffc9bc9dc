"""Delivery insight: a run's timeline, failure reasons, delivery latency.

Same checks as the other campaign views (``api.deps``: scope, existence,
workspace, then the run: 404), same envelope, freshness headers and ETag.
Read from the counts the fold keeps per run (``run_insight``) in one read
transaction, and remembered per campaign position and question, like stats:
the answers are functions of the campaign's rows alone (no clock). A remembered
answer is served on the event loop, with no query and no thread hop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api import docs
from api.answers import Payload
from api.deps import CampaignRead, RunId, campaign_read_with
from api.keys import SCOPE_ANALYTICS
from api.models import CampaignFailures, Envelope, RunLatency, RunTimeline
from api.payloads import insight as views

router = APIRouter(tags=["insight"])


async def _answer(
    read: CampaignRead[Any], kind: tuple[Any, ...], build: Callable[[], Payload],
    run_id: str | None,
) -> Response:
    """The payload remembered at the head's position, on the event loop; else, in the
    thread pool and one read transaction: the position, the run (404), then the
    payload, built once per (campaign position, question)."""
    key = (*kind, *read.key)
    remembered = read.reply.remembered(key, read.head.position)
    if remembered is not None:
        return remembered  # the run existed: its payload was built

    def from_db() -> Response:
        with read.reader.consistent():
            position = read.position()
            if run_id is not None:
                read.run(run_id)
            return read.reply.answer(
                position, lambda: read.reply.ctx.cache.get_or_build(key, position, build)
            )

    return await run_in_threadpool(from_db)


@dataclass(frozen=True, slots=True)
class TimelineAsked:
    run_id: str
    bucket: str | None
    scopes: ClassVar[tuple[str, ...]] = ()


async def timeline_asked(
    run_id: RunId,
    bucket: Annotated[
        views.Bucket | None,
        Query(description="Bucket width; default from the run's span: `1m` up to 3 h, "
              "`5m` up to 24 h, else `1h`."),
    ] = None,
) -> TimelineAsked:
    return TimelineAsked(run_id, bucket)


TimelineRead = Annotated[
    CampaignRead[TimelineAsked], Depends(campaign_read_with(SCOPE_ANALYTICS, timeline_asked))
]


@router.get(
    "/v1/campaign/{campaign_id}/runs/{run_id}/timeline",
    summary="Timeline of a run: submits and deliveries per bucket of event time",
    description="Recipients per bucket of the winning events' own time (`occurred_at`): "
    "`sent`, `failed`, `skipped` by the time of their winning submit (F4), `delivered` and "
    "`failed_delivery` by the time of their winning terminal report (F5); per bucket and "
    "cumulative. Buckets are UTC-aligned; empty ones are left out. `totals` equal the run's "
    "counters. Scope: `analytics:read`.",
    response_model=Envelope[RunTimeline],
    responses=docs.with_422(
        docs.responses(docs.TIMELINE_EXAMPLES, not_found=docs.RUN_NOT_FOUND,
                       scope=SCOPE_ANALYTICS),
        docs.BUCKET_422,
    ),
)
async def run_timeline(read: TimelineRead) -> Response:
    asked, reader = read.asked, read.reader
    run_key = (*read.key, asked.run_id)
    return await _answer(
        read,
        ("timeline", asked.run_id, asked.bucket),
        lambda: views.timeline_payload(
            read.head.campaign_id, asked.run_id, reader.timeline_minutes(run_key), asked.bucket
        ),
        asked.run_id,
    )


@dataclass(frozen=True, slots=True)
class FailuresAsked:
    run_id: str | None
    scopes: ClassVar[tuple[str, ...]] = ()


async def failures_asked(
    run_id: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Only this run (404 if unknown)."),
    ] = None,
) -> FailuresAsked:
    return FailuresAsked(run_id)


FailuresRead = Annotated[
    CampaignRead[FailuresAsked], Depends(campaign_read_with(SCOPE_ANALYTICS, failures_asked))
]


@router.get(
    "/v1/campaign/{campaign_id}/failures",
    summary="Why recipients failed: submit reasons and delivery error codes",
    description="Counted on recipients' winning states, over every run or `run_id`'s: "
    "`submits` groups recipients whose winning submit is `failed` or `skipped` by "
    "(`outcome`, `reason`); `reports` groups sent recipients whose winning report is "
    "terminal and not delivered by (`status`, `error_code`). Largest first (ties: outcome or "
    f"status, then text, null first); past the first {views.FAILURES_TOP} groups the rest is "
    "folded into `other`. Reasons and codes are producer text: ASCII control characters "
    f"become spaces, reasons are cut to {views.REASON_CHARS} characters and codes to "
    f"{views.ERROR_CODE_CHARS}; render them as text, never as HTML. "
    "Scope: `analytics:read`.",
    response_model=Envelope[CampaignFailures],
    responses=docs.responses(docs.FAILURES_EXAMPLES, not_found=docs.RUN_NOT_FOUND,
                             scope=SCOPE_ANALYTICS),
)
async def campaign_failures(read: FailuresRead) -> Response:
    run_id, reader = read.asked.run_id, read.reader
    return await _answer(
        read,
        ("failures", run_id),
        lambda: views.failures_payload(
            read.head.campaign_id,
            run_id,
            reader.failure_groups(read.key, run_id, top=views.FAILURES_TOP),
        ),
        run_id,
    )


@dataclass(frozen=True, slots=True)
class LatencyAsked:
    run_id: str
    scopes: ClassVar[tuple[str, ...]] = ()


async def latency_asked(run_id: RunId) -> LatencyAsked:
    return LatencyAsked(run_id)


LatencyRead = Annotated[
    CampaignRead[LatencyAsked], Depends(campaign_read_with(SCOPE_ANALYTICS, latency_asked))
]


@router.get(
    "/v1/campaign/{campaign_id}/runs/{run_id}/latency",
    summary="Delivery latency of a run: percentiles and a fixed histogram",
    description="For each delivered recipient: its winning report's time minus its `sent_at` "
    "(both the events' `occurred_at`), in whole milliseconds, clamped at 0 (`clock_skewed` "
    "counts reports stamped before their submit); exact below 10 s, from 10 s on rounded "
    "down to 4 significant digits (less than 0.1%; `exact` says whether any was). `p50_ms`, "
    "`p90_ms`, `p99_ms` are by nearest rank (the value at rank ceil(p x n)) over those "
    "values, never estimated; null when nothing was delivered. The "
    "histogram's buckets are fixed (and exact): [0, 1 s), [1 s, 5 s), [5 s, 10 s), [10 s, 30 s), "
    "[30 s, 1 min), [1, 5 min), [5, 15 min), [15 min, 1 h), [1, 6 h), [6, 24 h), [24, 72 h), "
    "72 h and more. Scope: `analytics:read`.",
    response_model=Envelope[RunLatency],
    responses=docs.responses(docs.LATENCY_EXAMPLES, not_found=docs.RUN_NOT_FOUND,
                             scope=SCOPE_ANALYTICS),
)
async def run_latency(read: LatencyRead) -> Response:
    run_id, reader = read.asked.run_id, read.reader
    return await _answer(
        read,
        ("latency", run_id),
        lambda: views.latency_payload(
            read.head.campaign_id,
            run_id,
            reader.latency((*read.key, run_id), views.LATENCY_EDGES_MS),
        ),
        run_id,
    )
