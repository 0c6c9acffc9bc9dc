"""Lists: campaigns of a workspace, run history, batch pages, recipient pages and CSV export.

List responses use the paged envelope ``{success, data: [...], meta: {total,
limit, offset}, errors, request_id}``. ``limit`` above its maximum is a 422
(never silently clamped); an offset past the end gives an empty page with the
total. Each page is read inside one read transaction, so the total, the rows
and their attempts come from the same flush.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from fastapi import APIRouter, Depends, Header, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from api import docs, gather
from api.answers import Reply, freshness_headers
from api.deps import Caller, CampaignRead, ReplyTo, RunId, campaign_read_with, require
from api.envelope import paged
from api.keys import SCOPE_CAMPAIGNS, SCOPE_PII
from api.models import (
    BatchListItem,
    CampaignListItem,
    PagedEnvelope,
    RecipientListItem,
    RunHistoryItem,
)
from api.payloads import breakdowns as views_extra
from api.readstore import ReadStore
from projector.fold.rows import RunKey

router = APIRouter(tags=["lists"])

PAGE_DEFAULT = 50
PAGE_MAX = 200
# Recipient pages start from a cached anchor every this many recipients (no OFFSET scan).
ANCHOR_STRIDE = 100

Limit = Annotated[
    int, Query(ge=1, le=PAGE_MAX, description=f"Page size, 1-{PAGE_MAX} (422 above).")
]
Offset = Annotated[int, Query(ge=0, le=2**62, description="Items to skip.")]
BatchStatusFilter = Annotated[
    Literal["pending", "running", "completed", "failed"] | None,
    Query(description="Only batches in this status."),
]
RecipientStatusFilter = Annotated[
    Literal["pending", "sent", "delivered", "failed", "skipped"] | None,
    Query(description="Only recipients with this recipient_status (F11)."),
]


def _paged(
    reply: Reply,
    position: int,
    variant: str,
    items: list[dict[str, Any]],
    total: int,
    limit: int,
    offset: int,
) -> Response:
    headers, not_modified = reply.conditional(position, variant)
    if not_modified:
        return not_modified
    return paged(items, total, limit, offset, reply.request_id, headers)


def _paged_docs(
    examples: dict[str, dict[str, Any]],
    *,
    not_found: dict[str, dict[str, Any]] | None = None,
    errors_422: dict[str, dict[str, Any]] = docs.LIMIT_422,
) -> dict[int | str, dict[str, Any]]:
    return docs.with_422(docs.responses(examples, not_found=not_found), errors_422)


@router.get(
    "/v1/campaigns",
    summary="Campaigns of the key's workspace, with their latest run",
    description="Only the campaigns of the API key's workspace, ordered by `campaign_id`. "
    "Each: name, channel, `run_count`, `last_run_at` (when the most recently started run "
    "started), and the latest run (greatest `scheduled_at`) with its id, status, outcome "
    "and `run_number`. `meta.total` counts the workspace's campaigns. "
    f"`limit` default {PAGE_DEFAULT}, max {PAGE_MAX}. Scope: `campaigns:read`.",
    response_model=PagedEnvelope[CampaignListItem],
    responses=_paged_docs(docs.CAMPAIGNS_EXAMPLES),
)
async def list_campaigns(
    caller: Caller, reply: ReplyTo, limit: Limit = PAGE_DEFAULT, offset: Offset = 0
) -> Response:
    # Not one campaign's read: the scope is checked here, after FastAPI validated the page.
    require(caller, SCOPE_CAMPAIGNS)
    owners = reply.ctx.owners
    if owners is None:
        return await run_in_threadpool(_campaigns_page, reply, caller.workspace_id, limit, offset)
    part = gather.asked_partitions(reply, owners)
    if part is None:
        return await gather.campaign_list(reply, owners, caller.workspace_id, limit, offset)
    ids = gather.ids_asked(reply)
    position, total, items = await run_in_threadpool(
        gather.read_part, reply.ctx.reader, caller.workspace_id, part, owners.partitions,
        offset, limit, ids,
    )
    return _paged(reply, position, f"part:{ids}", items, total, limit, offset)


def _campaigns_page(reply: Reply, workspace_id: str, limit: int, offset: int) -> Response:
    reader = reply.ctx.reader
    with reader.consistent():
        # Any flush may add a campaign to the workspace: bind the ETag to the flush.
        position = reader.flush_seq()
        total, campaigns = reader.campaigns_page(workspace_id, limit=limit, offset=offset)
        runs = reader.runs_of_many(workspace_id, [c.campaign_id for c in campaigns])
    items = [views_extra.campaign_item(c, runs.get(c.campaign_id, [])) for c in campaigns]
    return _paged(reply, position, "", items, total, limit, offset)


@dataclass(frozen=True, slots=True)
class RunsPage:
    limit: int
    offset: int
    scopes: ClassVar[tuple[str, ...]] = ()


async def runs_page(
    limit: Annotated[
        int, Query(ge=1, le=views_extra.RUN_HISTORY_MAX, description="Page size, 1-50.")
    ] = views_extra.RUN_HISTORY_MAX,
    offset: Offset = 0,
) -> RunsPage:
    return RunsPage(limit, offset)


RunsRead = Annotated[
    CampaignRead[RunsPage], Depends(campaign_read_with(SCOPE_CAMPAIGNS, runs_page))
]


@router.get(
    "/v1/campaign/{campaign_id}/runs",
    summary="Run history, newest first, with run numbers and outcomes",
    description="Runs of the campaign, newest first (highest `run_number` first; run numbers "
    "count from 1 by `scheduled_at`, then `run_id`). `outcome` is `completed_with_errors` for "
    "a completed run with any failed submit or failed delivery, else the status. At most "
    f"{views_extra.RUN_HISTORY_MAX} per page. Scope: `campaigns:read`.",
    response_model=PagedEnvelope[RunHistoryItem],
    responses=_paged_docs(docs.RUNS_EXAMPLES, errors_422={
        "limit_above_max": docs._err("VALIDATION_ERROR",
                                     "query.limit: Input should be less than or equal to 50")}),
)
def run_history(read: RunsRead) -> Response:
    with read.reader.consistent():
        position = read.position()
        runs = read.reader.runs_of(read.key)
    page = read.asked
    items = views_extra.run_history(runs, page.limit, page.offset)
    return _paged(read.reply, position, "", items, len(runs), page.limit, page.offset)


@dataclass(frozen=True, slots=True)
class BatchesQuery:
    skip: int
    limit: int
    status: str | None
    run_id: str | None
    scopes: ClassVar[tuple[str, ...]] = ()


async def batches_query(
    skip: Offset = 0,
    limit: Limit = PAGE_DEFAULT,
    status: BatchStatusFilter = None,
    run_id: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Only this run's batches.")
    ] = None,
) -> BatchesQuery:
    return BatchesQuery(skip, limit, status, run_id)


BatchesRead = Annotated[
    CampaignRead[BatchesQuery], Depends(campaign_read_with(SCOPE_CAMPAIGNS, batches_query))
]


@router.get(
    "/v1/campaign/{campaign_id}/batches",
    summary="Batches of the campaign, paged, with live per-status counters",
    description="Batches named by a batch event, newest run first (by `scheduled_at`), then "
    "`batch_sequence`, then `batch_id`. `sent_count` / `failed_count` are the maintained F6 "
    "counters (recipients whose winning submit names the batch); `counters` are computed on "
    "read from the batch's recipients (membership from `batch.created`), in the buckets of "
    f"`/stats`. `skip` is the offset; `limit` default {PAGE_DEFAULT}, max {PAGE_MAX}; "
    "`meta.total` counts the batches matching the filters. Scope: `campaigns:read`.",
    response_model=PagedEnvelope[BatchListItem],
    responses=_paged_docs(docs.BATCHES_EXAMPLES, errors_422={**docs.LIMIT_422,
                                                            **docs.STATUS_422}),
)
def list_batches(read: BatchesRead) -> Response:
    reader, key, q = read.reader, read.key, read.asked
    with reader.consistent():
        position = read.position()
        total, batches = reader.batches_page(
            key, status=q.status, run_id=q.run_id, limit=q.limit, offset=q.skip
        )
        counters: dict[tuple[str, str], dict[str, int]] = {}
        by_run: dict[str, list[str]] = {}
        for b in batches:
            by_run.setdefault(b.run_id, []).append(b.batch_id)
        for rid, ids in by_run.items():
            for bid, c in reader.batch_counters((*key, rid), ids).items():
                counters[(rid, bid)] = c
    items = [views_extra.batch_item(b, counters.get((b.run_id, b.batch_id))) for b in batches]
    return _paged(read.reply, position, "", items, total, q.limit, q.skip)


def _wants_csv(accept: str | None) -> bool:
    if not accept:
        return False
    return any(part.split(";")[0].strip().lower() == "text/csv" for part in accept.split(","))


def _csv_lines(first: list[Any], rest: Iterator[list[Any]]) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(views_extra.CSV_COLUMNS)
    chunk = first
    while True:
        for r, attempts in chunk:
            writer.writerow(views_extra.recipient_csv_row(r, attempts))
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
        nxt = next(rest, None)
        if nxt is None:
            return
        chunk = nxt


def _csv_export(
    reply: Reply, reader: ReadStore, run: RunKey, status: str | None
) -> Response:
    chunks = reader.export_recipients(run, status=status)
    # The first chunk is read here, so a failing query is an error response, not a cut stream.
    first = next(chunks, [])
    headers = freshness_headers(reply.ctx.status())
    headers["Cache-Control"] = "no-store"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run[2])
    headers["Content-Disposition"] = f'attachment; filename="recipients-{safe}.csv"'
    return StreamingResponse(
        _csv_lines(first, chunks), media_type="text/csv; charset=utf-8", headers=headers
    )


_RECIPIENTS_RESPONSES = _paged_docs(
    docs.RECIPIENTS_EXAMPLES, not_found=docs.RUN_NOT_FOUND,
    errors_422={**docs.LIMIT_422, "bad_status": docs._err(
        "VALIDATION_ERROR", "query.status: Input should be 'pending', 'sent', 'delivered', "
        "'failed' or 'skipped'")},
)
_RECIPIENTS_RESPONSES[200]["content"]["text/csv"] = {
    "schema": {"type": "string"},
    "example": docs.RECIPIENTS_CSV_EXAMPLE,
}
_RECIPIENTS_RESPONSES[403]["content"]["application/json"]["examples"]["csv_without_pii"] = {
    "value": docs._err("INSUFFICIENT_SCOPE", "This API key lacks the pii:read scope.")
}


@dataclass(frozen=True, slots=True)
class RecipientsQuery:
    run_id: str
    limit: int
    offset: int
    status: str | None
    csv: bool  # Accept: text/csv: the whole run, not a page

    @property
    def scopes(self) -> tuple[str, ...]:
        return (SCOPE_PII,) if self.csv else ()


async def recipients_query(
    run_id: RunId,
    limit: Limit = PAGE_DEFAULT,
    offset: Offset = 0,
    status: RecipientStatusFilter = None,
    accept: Annotated[
        str | None,
        Header(description="`text/csv` streams the whole run as CSV (needs pii:read)."),
    ] = None,
) -> RecipientsQuery:
    return RecipientsQuery(run_id, limit, offset, status, _wants_csv(accept))


RecipientsRead = Annotated[
    CampaignRead[RecipientsQuery], Depends(campaign_read_with(SCOPE_CAMPAIGNS, recipients_query))
]


@router.get(
    "/v1/campaign/{campaign_id}/runs/{run_id}/recipients",
    summary="Recipients of a run, paged, each with every submit attempt (or CSV)",
    description="The run's known recipients (named by `batch.created` or a submit) in F11 "
    "order: `batch_sequence` (unknown last), then `recipient_id`; stable between pages. Each "
    "carries its attempts (number, outcome, message id, submit time, the message's delivery "
    "status and report time). `phone_number` is shown with the `pii:read` scope, otherwise "
    "masked but its last 3 digits. `status` filters on `recipient_status`. `limit` default "
    f"{PAGE_DEFAULT}, max {PAGE_MAX} (422 above); an offset past the end gives `[]` with "
    "`meta.total`. With `Accept: text/csv` the whole run (filtered by `status`, not paged) is "
    "streamed as CSV; that needs `pii:read`. Scope: `campaigns:read`.",
    response_model=PagedEnvelope[RecipientListItem],
    responses=_RECIPIENTS_RESPONSES,
)
def list_recipients(read: RecipientsRead) -> Response:
    reader, q = read.reader, read.asked
    show_phone = read.caller.has(SCOPE_PII)
    with reader.consistent():
        run = read.run(q.run_id).key
        if q.csv:
            return _csv_export(read.reply, reader, run, q.status)
        position = read.position()
        index = read.reply.ctx.cache.get_or_build(
            ("recipient-anchors", *run, q.status), position,
            lambda: reader.recipient_anchors(run, status=q.status, stride=ANCHOR_STRIDE),
        )
        rows: list[Any] = []
        if q.offset < index.total:
            anchor = q.offset // index.stride
            skip = q.offset - anchor * index.stride
            rows = reader.recipients_from(
                run, status=q.status, anchor=index.keys[anchor], limit=skip + q.limit
            )[skip:]
        # A winning attempt 1 is the only attempt (F4: the highest attempt wins, and
        # within one attempt the same event wins): read the attempts of the others only.
        retried = [r.recipient_id for r, _s, _t in rows if (r.attempt or 0) > 1]
        attempts = reader.attempts_of(run, retried)
    items = []
    for r, report_status, reported_at in rows:
        if r.attempt == 1 and r.outcome is not None:
            tried = [views_extra.attempt_item(
                1, r.outcome, r.message_id, r.submit_batch_id, r.submitted_at, r.reason,
                report_status, reported_at)]
        else:
            tried = [views_extra.attempt_item(*a) for a in attempts.get(r.recipient_id, ())]
        items.append(views_extra.recipient_item(r, tried, show_phone=show_phone))
    return _paged(read.reply, position, "pii" if show_phone else "masked", items, index.total,
                  q.limit, q.offset)
