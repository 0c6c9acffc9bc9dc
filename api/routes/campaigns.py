"""Campaign reads: status, analytics, run detail, snapshot.

Each handler gets its campaign checked by its dependency (``api.deps``:
scope, 403 that reveals nothing; existence, 404 as the reference says for an
unknown campaign; workspace, 403 with no data), then reads and answers
(``api.answers``: the position before the data, so a 304 never hides a change).

Status and analytics, the polled endpoints, read runs only, never
recipients, and build a payload once per campaign position. Beside the writer
they are answered from its memory alone (heads and runs as of one flush); over
a file, from one read transaction. Run detail and snapshot read inside one
read transaction so their parts come from the same flush.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, ClassVar

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api import docs
from api.answers import Payload
from api.deps import (
    AnalyticsPoll,
    CampaignRead,
    NothingElse,
    RunId,
    StatusPoll,
    campaign_read_with,
    head_of,
)
from api.envelope import ok
from api.errors import SnapshotNotFound
from api.keys import SCOPE_ANALYTICS, SCOPE_CAMPAIGNS, SCOPE_PII
from api.models import CampaignAnalytics, CampaignStatus, Envelope, RunDetail, RunSnapshot
from api.payloads import campaign as views
from api.payloads.breakdowns import mask_phone
from api.readstore import CampaignHead
from api.receipts import overdue_from_runs, overdue_of
from projector.fold.rows import RunRow

router = APIRouter(tags=["campaigns"])

# (head, runs, receipt_overdue per run) -> payload: the runs are the campaign's at the
# head's position, and the overdue counts of the same state (``api.receipts``).
PayloadBuilder = Callable[[CampaignHead, list[RunRow], dict[str, int]], Payload]


def _status_payload(head: CampaignHead, runs: list[RunRow], overdue: dict[str, int]) -> Payload:
    run = views.latest_run(runs)
    return views.status_payload(
        head.campaign_id, run, overdue.get(run.run_id, 0) if run is not None else 0
    )


def _analytics_payload(
    head: CampaignHead, runs: list[RunRow], overdue: dict[str, int]
) -> Payload:
    return views.analytics_payload(
        head.campaign_id, head.workspace_id, runs, sum(overdue.values())
    )


def _from_memory(
    read: CampaignRead[NothingElse], kind: str, build: PayloadBuilder
) -> Response | None:
    """A polled endpoint's answer from memory alone, or None when it needs DuckDB.

    Beside the writer every answer comes from its memory: the campaign id's
    heads and the caller's campaign's runs as of one flush
    (``ReadStore.polled``, read by the dependency), never mixed with DuckDB,
    which runs ahead of memory between a flush's COMMIT and the writer noting
    it. A payload cached under a position is then that position's own, and a
    poller's answers only move forward (docs/reliability.md). Over a file, a
    304 or a payload cached at the head's position needs no query. Answered
    on the event loop: no thread hop, which under ingestion costs a wait for
    the GIL each way. The dependency checked existence and workspace; the
    ETag comes after.
    """
    head, runs, reply = read.head, read.runs, read.reply
    headers, not_modified = reply.conditional(head.position)
    if not_modified is not None:
        return not_modified
    if runs is not None:
        polled = runs
        overdue = overdue_from_runs(polled, reply.ctx.receipt_window)
        if overdue is None:
            # Receipts may be overdue (rare: a campaign older than the receipt window
            # with receipts pending): counting them reads DuckDB, in the thread pool,
            # unless this position's payload was built already.
            payload = reply.ctx.cache.peek((kind, *head.key), head.position)
        else:
            counted = overdue
            payload = reply.ctx.cache.get_or_build(
                (kind, *head.key), head.position, lambda: build(head, polled, counted)
            )
    else:
        payload = reply.ctx.cache.peek((kind, *head.key), head.position)
    return None if payload is None else ok(payload, reply.request_id, headers=headers)


async def _polled(read: CampaignRead[NothingElse], kind: str, build: PayloadBuilder) -> Response:
    """A polled endpoint: from memory when it can be, else DuckDB in the thread pool."""
    answer = _from_memory(read, kind, build)
    if answer is not None:
        return answer
    reader, caller, campaign_id = read.reader, read.caller, read.head.campaign_id

    def from_db() -> Response:
        # Heads and runs from one read transaction: the payload cached under
        # the position is built from that position's rows.
        with reader.consistent():
            head = head_of(reader.stored_heads(campaign_id), caller, campaign_id)

            def built() -> Payload:
                runs = reader.runs_of(head.key)
                window = read.reply.ctx.receipt_window
                return build(head, runs, overdue_of(reader, head.key, runs, window))

            return read.reply.cached(kind, head, built)

    return await run_in_threadpool(from_db)


_STATUS_DOC = dict(
    response_model=Envelope[CampaignStatus],
    responses=docs.responses(docs.STATUS_EXAMPLES),
)


@router.get(
    "/v1/campaign/{campaign_id}/status",
    summary="Live status of the latest run (poll this)",
    description="Latest run's status and batch counters; `NO_RUN` when the campaign has no run. "
    "The engine's `claimed` is shown as `running`; `current_batch` counts completed batches. "
    "Scope: `campaigns:read`.",
    **_STATUS_DOC,
)
async def campaign_status(read: StatusPoll) -> Response:
    return await _polled(read, "status", _status_payload)


@router.get(
    "/campaigns/{campaign_id}/status",
    summary="Live status (user-facing mirror, same shape)",
    description="Same payload as `/v1/campaign/{campaign_id}/status`. Scope: `campaigns:read`.",
    **_STATUS_DOC,
)
async def campaign_status_mirror(read: StatusPoll) -> Response:
    return await _polled(read, "status", _status_payload)


@router.get(
    "/v1/campaign/{campaign_id}/analytics",
    summary="Aggregate analytics over all runs",
    description="Counts, rates (0.0-1.0, 4 decimals) and timing over every run of the "
    "campaign. A zeroed payload with null rates (HTTP 200) when there is nothing yet. "
    "Scope: `analytics:read`.",
    response_model=Envelope[CampaignAnalytics],
    responses=docs.responses(docs.ANALYTICS_EXAMPLES, scope=SCOPE_ANALYTICS),
)
async def campaign_analytics(read: AnalyticsPoll) -> Response:
    return await _polled(read, "analytics", _analytics_payload)


@dataclass(frozen=True, slots=True)
class RunAsked:
    run_id: str
    scopes: ClassVar[tuple[str, ...]] = ()


async def run_asked(run_id: RunId) -> RunAsked:
    return RunAsked(run_id)


RunRead = Annotated[
    CampaignRead[RunAsked], Depends(campaign_read_with(SCOPE_CAMPAIGNS, run_asked))
]


@router.get(
    "/v1/campaign/{campaign_id}/runs/{run_id}",
    summary="Run detail: run, batches, recipients (capped at 500), summary",
    description="The composite run detail. `recipients` holds at most 500 rows in batch "
    "order, then recipient id; `recipients_truncated` says whether more exist; "
    "`recipient_summary` is always exact. Scope: `campaigns:read`.",
    response_model=Envelope[RunDetail],
    responses=docs.responses(
        {"run": docs.envelope_example(docs.RUN_DETAIL_EXAMPLE)}, not_found=docs.RUN_NOT_FOUND
    ),
)
def run_detail(read: RunRead) -> Response:
    reader = read.reader
    with reader.consistent():
        campaign = read.campaign()
        position = read.position()
        run = read.run(read.asked.run_id)
        show_phones = read.caller.has(SCOPE_PII)

        def build() -> Payload:
            page = reader.recipients_of(run.key, views.RECIPIENTS_CAP + 1)
            data = views.run_detail_payload(
                campaign,
                run,
                reader.snapshot(run.key),
                reader.batches_of(run.key),
                page[: views.RECIPIENTS_CAP],
                more_recipients=len(page) > views.RECIPIENTS_CAP,
            )
            if not show_phones:  # phone numbers are PII: pii:read or masked
                for r in data["recipients"]:
                    r["phone_number"] = mask_phone(r["phone_number"])
            return data

        return read.reply.answer(position, build, "pii" if show_phones else "masked")


@dataclass(frozen=True, slots=True)
class SnapshotAsked:
    run_id: str
    include_recipients: bool

    @property
    def scopes(self) -> tuple[str, ...]:
        return (SCOPE_PII,) if self.include_recipients else ()


async def snapshot_asked(
    run_id: RunId,
    include_recipients: Annotated[
        bool, Query(description="Add the recipients' phone numbers (PII; scope pii:read).")
    ] = False,
) -> SnapshotAsked:
    return SnapshotAsked(run_id, include_recipients)


SnapshotRead = Annotated[
    CampaignRead[SnapshotAsked], Depends(campaign_read_with(SCOPE_CAMPAIGNS, snapshot_asked))
]


@router.get(
    "/v1/campaign/{campaign_id}/runs/{run_id}/snapshot",
    summary="The run's frozen execution snapshot (recipients are PII)",
    description="Content, sender, channel, provider and cost (service units, never money) as "
    "frozen for dispatch. `include_recipients=true` adds the phone-number list and needs the "
    "`pii:read` scope besides `campaigns:read`. 404 before any snapshot is frozen.",
    response_model=Envelope[RunSnapshot],
    responses=docs.responses(
        docs.SNAPSHOT_EXAMPLES, not_found=docs.SNAPSHOT_NOT_FOUND, scope=SCOPE_PII
    ),
)
def run_snapshot(read: SnapshotRead) -> Response:
    reader = read.reader
    with reader.consistent():
        position = read.position()
        run = read.run(read.asked.run_id)
        snapshot = reader.snapshot(run.key)
        if snapshot is None:
            raise SnapshotNotFound()
        return read.reply.answer(
            position,
            lambda: views.snapshot_payload(run, snapshot, read.asked.include_recipients),
        )
