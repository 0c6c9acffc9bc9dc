"""Campaign reads: status, analytics, run detail, snapshot.

Each handler checks, in order: scope (403, reveals nothing), the campaign's
existence (404, as the reference says for an unknown campaign), its workspace
(403, no data), then answers. The campaign's position is read before its
data: an ETag (or a cached payload) may then be older than the data (one
extra full response) but never newer, so a 304 never hides a change.

Status and analytics, the polled endpoints, read runs only, never
recipients, and build a payload once per campaign position. Beside the writer
they are answered from its memory alone (heads and runs as of one flush); over
a file, from one read transaction. Run detail and snapshot read inside one
read transaction so their parts come from the same flush.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api import docs
from api.deps import ApiContext, Caller, CampaignId, Context, Reader, RequestId, RunId
from api.envelope import ok
from api.errors import (
    CampaignNotFound,
    Forbidden,
    InsufficientScope,
    RunNotFound,
    SnapshotNotFound,
)
from api.keys import SCOPE_ANALYTICS, SCOPE_CAMPAIGNS, SCOPE_PII, Principal
from api.models import CampaignAnalytics, CampaignStatus, Envelope, RunDetail, RunSnapshot
from api.payloads import campaign as views
from api.payloads.breakdowns import mask_phone
from api.readstore import CampaignHead, Heads, ReadStore
from projector.fold.rows import CampaignKey, CampaignRow, RunRow
from projector.intake.health import PipelineSnapshot

router = APIRouter(tags=["campaigns"])

IfNoneMatch = Annotated[
    str | None,
    Header(description="An ETag from an earlier response: 304 when nothing changed since."),
]


def _require(caller: Principal, *scopes: str) -> None:
    for scope in scopes:
        if not caller.has(scope):
            raise InsufficientScope(f"This API key lacks the {scope} scope.")


def _owned_campaign(reader: ReadStore, caller: Principal, campaign_id: str) -> CampaignRow:
    """The caller's workspace's campaign of this id (F12), else 403 if only another
    workspace has one, else 404."""
    campaign = reader.campaign((caller.workspace_id, campaign_id))
    if campaign is None:
        _head_of(reader.campaign_heads(campaign_id), caller, campaign_id)  # raises
        raise CampaignNotFound()  # created after the read above began: not in its snapshot
    return campaign


def _owned_head(reader: ReadStore, caller: Principal, campaign_id: str) -> CampaignHead:
    return _head_of(reader.campaign_heads(campaign_id), caller, campaign_id)


def _head_of(heads: Heads, caller: Principal, campaign_id: str) -> CampaignHead:
    """The caller's campaign among the workspaces' campaigns of one id, else 403 or 404."""
    position = heads.get(caller.workspace_id)
    if position is None:
        raise Forbidden() if heads else CampaignNotFound()
    return CampaignHead(caller.workspace_id, campaign_id, position)


def _run_of(reader: ReadStore, campaign: CampaignKey, run_id: str) -> RunRow:
    run = reader.run((*campaign, run_id))
    if run is None:
        raise RunNotFound()
    return run


def etag(ctx: ApiContext, position: int, request: Request, variant: str = "") -> str:
    """Weak ETag: the campaign's flush position and what was asked (path and query).

    ``variant`` names what else the answer depends on (the caller's PII view,
    clock-dependent state), so a 304 never confirms another variant's body.
    """
    asked = f"{ctx.instance}:{request.url.path}?{request.url.query}".encode()
    if variant:
        asked += f"#{variant}".encode()
    return f'W/"{position}-{hashlib.blake2b(asked, digest_size=8).hexdigest()}"'


def etag_matches(header: str | None, tag: str) -> bool:
    if not header:
        return False
    opaque = tag[2:]
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


def freshness_headers(snap: PipelineSnapshot) -> dict[str, str]:
    headers = {"X-Projection-Watermark": snap.watermark or f"flush:{snap.flush_seq}"}
    lag = snap.lag
    if lag is not None:
        headers["X-Projection-Lag"] = str(lag)
    return headers


def _answer(
    ctx: ApiContext,
    request: Request,
    request_id: str,
    if_none_match: str | None,
    position: int,
    build: Callable[[], dict[str, Any]],
    variant: str = "",
) -> Response:
    """304 when the client's ETag is current, else the payload; freshness headers on both.

    ``position`` must have been read before the data ``build`` reads.
    """
    headers, not_modified = conditional(ctx, request, if_none_match, position, variant)
    return not_modified or ok(build(), request_id, headers=headers)


def _answer_cached(
    ctx: ApiContext,
    request: Request,
    request_id: str,
    if_none_match: str | None,
    kind: str,
    head: CampaignHead,
    build: Callable[[], dict[str, Any]],
) -> Response:
    """``_answer`` for payloads that depend on the campaign's rows alone: built
    once per campaign position (polls of an unchanged campaign cost no read)."""
    return _answer(
        ctx, request, request_id, if_none_match, head.position,
        lambda: ctx.cache.get_or_build((kind, *head.key), head.position, build),
    )


def conditional(
    ctx: ApiContext,
    request: Request,
    if_none_match: str | None,
    position: int,
    variant: str = "",
) -> tuple[dict[str, str], Response | None]:
    """Freshness and ETag headers, and the 304 to send when the client's tag is current."""
    headers = freshness_headers(ctx.status())
    headers["ETag"] = etag(ctx, position, request, variant)
    headers["Cache-Control"] = "no-cache"
    if etag_matches(if_none_match, headers["ETag"]):
        return headers, Response(status_code=304, headers=headers)
    return headers, None


def _from_memory(
    ctx: ApiContext,
    reader: ReadStore,
    caller: Principal,
    request: Request,
    request_id: str,
    if_none_match: str | None,
    kind: str,
    campaign_id: str,
    build: PayloadBuilder,
) -> Response | None:
    """A polled endpoint's answer from memory alone, or None when it needs DuckDB.

    Beside the writer every answer comes from its memory: the campaign id's
    heads and the caller's campaign's runs as of one flush
    (``ReadStore.polled``), never mixed with DuckDB, which runs ahead of
    memory between a flush's COMMIT and the writer noting it. A payload
    cached under a position is then that position's own, and a poller's
    answers only move forward (docs/reliability.md). Over a file, a 304 or a
    payload cached at the head's position needs no query. Answered on the
    event loop: no thread hop, which under ingestion costs a wait for the GIL
    each way. The order of checks is the slow path's (existence, workspace,
    then ETag).
    """
    runs: list[RunRow] | None = None
    if reader.beside_writer:
        heads, runs = reader.polled(caller.workspace_id, campaign_id)
    else:
        known = reader.known_heads(campaign_id)
        if known is None:
            return None
        heads = known
    head = _head_of(heads, caller, campaign_id)  # 404 or 403 as of that flush
    headers, not_modified = conditional(ctx, request, if_none_match, head.position)
    if not_modified is not None:
        return not_modified
    if runs is not None:
        polled = runs
        payload = ctx.cache.get_or_build(
            (kind, *head.key), head.position, lambda: build(head, polled)
        )
    else:
        payload = ctx.cache.peek((kind, *head.key), head.position)
    return None if payload is None else ok(payload, request_id, headers=headers)


def _status_payload(head: CampaignHead, runs: list[RunRow]) -> dict[str, Any]:
    return views.status_payload(head.campaign_id, views.latest_run(runs))


def _analytics_payload(head: CampaignHead, runs: list[RunRow]) -> dict[str, Any]:
    return views.analytics_payload(head.campaign_id, head.workspace_id, runs)


# (head, runs) -> payload: the runs are the campaign's at the head's position.
PayloadBuilder = Callable[[CampaignHead, list[RunRow]], dict[str, Any]]


async def _polled(
    kind: str,
    scope: str,
    build: PayloadBuilder,
    campaign_id: str,
    caller: Principal,
    reader: ReadStore,
    ctx: ApiContext,
    request: Request,
    request_id: str,
    if_none_match: str | None,
) -> Response:
    """A polled endpoint: from memory when it can be, else DuckDB in the thread pool."""
    _require(caller, scope)
    answer = _from_memory(
        ctx, reader, caller, request, request_id, if_none_match, kind, campaign_id, build
    )
    if answer is not None:
        return answer

    def from_db() -> Response:
        # Heads and runs from one read transaction: the payload cached under
        # the position is built from that position's rows.
        with reader.consistent():
            head = _head_of(reader.stored_heads(campaign_id), caller, campaign_id)
            return _answer_cached(
                ctx, request, request_id, if_none_match, kind, head,
                lambda: build(head, reader.runs_of(head.key)),
            )

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
async def campaign_status(
    campaign_id: CampaignId,
    caller: Caller,
    reader: Reader,
    ctx: Context,
    request: Request,
    request_id: RequestId,
    if_none_match: IfNoneMatch = None,
) -> Response:
    return await _polled(
        "status", SCOPE_CAMPAIGNS, _status_payload,
        campaign_id, caller, reader, ctx, request, request_id, if_none_match,
    )


@router.get(
    "/campaigns/{campaign_id}/status",
    summary="Live status (user-facing mirror, same shape)",
    description="Same payload as `/v1/campaign/{campaign_id}/status`. Scope: `campaigns:read`.",
    **_STATUS_DOC,
)
async def campaign_status_mirror(
    campaign_id: CampaignId,
    caller: Caller,
    reader: Reader,
    ctx: Context,
    request: Request,
    request_id: RequestId,
    if_none_match: IfNoneMatch = None,
) -> Response:
    return await _polled(
        "status", SCOPE_CAMPAIGNS, _status_payload,
        campaign_id, caller, reader, ctx, request, request_id, if_none_match,
    )


@router.get(
    "/v1/campaign/{campaign_id}/analytics",
    summary="Aggregate analytics over all runs",
    description="Counts, rates (0.0-1.0, 4 decimals) and timing over every run of the "
    "campaign. A zeroed payload with null rates (HTTP 200) when there is nothing yet. "
    "Scope: `analytics:read`.",
    response_model=Envelope[CampaignAnalytics],
    responses=docs.responses(docs.ANALYTICS_EXAMPLES, scope=SCOPE_ANALYTICS),
)
async def campaign_analytics(
    campaign_id: CampaignId,
    caller: Caller,
    reader: Reader,
    ctx: Context,
    request: Request,
    request_id: RequestId,
    if_none_match: IfNoneMatch = None,
) -> Response:
    return await _polled(
        "analytics", SCOPE_ANALYTICS, _analytics_payload,
        campaign_id, caller, reader, ctx, request, request_id, if_none_match,
    )


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
def run_detail(
    campaign_id: CampaignId,
    run_id: RunId,
    caller: Caller,
    reader: Reader,
    ctx: Context,
    request: Request,
    request_id: RequestId,
    if_none_match: IfNoneMatch = None,
) -> Response:
    _require(caller, SCOPE_CAMPAIGNS)
    with reader.consistent():
        campaign = _owned_campaign(reader, caller, campaign_id)
        position = reader.position(campaign.key)
        run = _run_of(reader, campaign.key, run_id)

        show_phones = caller.has(SCOPE_PII)

        def build() -> dict[str, Any]:
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

        variant = "pii" if show_phones else "masked"
        return _answer(ctx, request, request_id, if_none_match, position, build, variant)


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
def run_snapshot(
    campaign_id: CampaignId,
    run_id: RunId,
    caller: Caller,
    reader: Reader,
    ctx: Context,
    request: Request,
    request_id: RequestId,
    include_recipients: Annotated[
        bool, Query(description="Add the recipients' phone numbers (PII; scope pii:read).")
    ] = False,
    if_none_match: IfNoneMatch = None,
) -> Response:
    _require(caller, SCOPE_CAMPAIGNS, *((SCOPE_PII,) if include_recipients else ()))
    with reader.consistent():
        campaign = _owned_campaign(reader, caller, campaign_id)
        position = reader.position(campaign.key)
        run = _run_of(reader, campaign.key, run_id)
        snapshot = reader.snapshot(run.key)
        if snapshot is None:
            raise SnapshotNotFound()
        return _answer(
            ctx, request, request_id, if_none_match, position,
            lambda: views.snapshot_payload(run, snapshot, include_recipients),
        )
