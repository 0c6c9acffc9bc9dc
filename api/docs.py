"""OpenAPI ``responses=`` blocks: examples for every endpoint and error status."""

from __future__ import annotations

from typing import Any

from api.models import ErrorEnvelope

RID = "req_01JV3K8Q2M5XN7R4T9W6YB1C0D"
CID = "8d2e1f6a-4b3c-4d5e-9f60-718293a4b5c6"

FRESHNESS_HEADERS: dict[str, Any] = {
    "X-Request-ID": {"description": "Request id (also request_id in the body).",
                     "schema": {"type": "string"}},
    "X-Projection-Watermark": {
        "description": "Source offsets applied ('topic:partition=next_offset,...'), "
        "or 'flush:<seq>' when no offsets are recorded.",
        "schema": {"type": "string"},
    },
    "X-Projection-Lag": {"description": "Records behind the log end, when known.",
                         "schema": {"type": "integer"}},
    "ETag": {"description": "Weak validator; send it back in If-None-Match to get 304.",
             "schema": {"type": "string"}},
}


def _err(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "data": None, "errors": [{"code": code, "message": message}],
            "request_id": RID}


ERROR_EXAMPLES: dict[int, dict[str, dict[str, Any]]] = {
    401: {"unauthorized": _err("UNAUTHORIZED", "Missing or invalid X-API-Key.")},
    403: {
        "foreign_workspace": _err(
            "FORBIDDEN", "This API key does not own the campaign's workspace."
        ),
        "missing_scope": _err("INSUFFICIENT_SCOPE", "This API key lacks the campaigns:read scope."),
    },
    404: {"campaign": _err("CAMPAIGN_NOT_FOUND", "Campaign not found.")},
    422: {"bad_parameter": _err("VALIDATION_ERROR",
                                "query.include_recipients: Input should be a valid boolean")},
    500: {"internal": _err("INTERNAL_ERROR", "Internal server error; safe to retry with backoff.")},
}

ERROR_DESCRIPTIONS = {
    401: "Missing or invalid X-API-Key.",
    403: "The key does not own the campaign's workspace, or lacks a scope.",
    404: "Not found.",
    422: "Invalid parameters.",
    500: "Server error; safe to retry with backoff.",
}


def responses(
    ok_examples: dict[str, dict[str, Any]],
    *,
    not_found: dict[str, dict[str, Any]] | None = None,
    scope: str = "campaigns:read",
) -> dict[int | str, dict[str, Any]]:
    """200 (named examples), 304 and every error status of a campaign data endpoint."""
    out: dict[int | str, dict[str, Any]] = {
        200: {"headers": FRESHNESS_HEADERS,
              "content": {"application/json": {"examples": ok_examples}}},
        304: {"description": "Not modified since the ETag in If-None-Match.",
              "headers": FRESHNESS_HEADERS},
    }
    for status, examples in ERROR_EXAMPLES.items():
        if status == 404 and not_found is not None:
            examples = not_found
        if status == 403:
            examples = {**examples, "missing_scope": _err(
                "INSUFFICIENT_SCOPE", f"This API key lacks the {scope} scope.")}
        out[status] = {
            "model": ErrorEnvelope,
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"examples": {
                k: {"value": v} for k, v in examples.items()}}},
        }
    return out


def envelope_example(data: Any) -> dict[str, Any]:
    return {"value": {"success": True, "data": data, "errors": None, "request_id": RID}}


STATUS_EXAMPLE = {
    "campaign_id": CID, "campaign_run_id": "run_789", "status": "running", "current_batch": 1,
    "total_batches": 2, "recipient_count": 1500, "sent": 1000, "failed": 5, "skipped": 0,
    "delivered": 800, "receipt_overdue": 0, "updated_at": "2026-05-12T09:14:02.218Z",
}
STATUS_EXAMPLES = {
    "run": envelope_example(STATUS_EXAMPLE),
    "no_run": envelope_example({"campaign_id": CID, "status": "NO_RUN"}),
}

ANALYTICS_EXAMPLE = {
    "campaign_id": CID, "campaign_run_id": "run_789", "workspace_id": "ws_alpha",
    "total_recipients": 1500, "sent_count": 1495, "failed_count": 5, "skipped_count": 0,
    "cancelled_count": 0, "delivered_count": 1400, "failed_delivery_count": 95,
    "pending_delivery_count": 0, "receipt_overdue_count": 0, "delivery_rate": 0.9365,
    "failure_rate": 0.0033,
    "first_sent_at": "2026-05-12T09:12:01.001Z", "last_sent_at": "2026-05-12T09:14:48.812Z",
    "completed_at": "2026-05-12T09:14:59.044Z",
}
ANALYTICS_EXAMPLES = {
    "populated": envelope_example(ANALYTICS_EXAMPLE),
    "nothing_yet": envelope_example({
        **{k: 0 for k in ANALYTICS_EXAMPLE if k.endswith("_count") or k == "total_recipients"},
        "campaign_id": CID, "campaign_run_id": None, "workspace_id": "ws_alpha",
        "delivery_rate": None, "failure_rate": None, "first_sent_at": None,
        "last_sent_at": None, "completed_at": None,
    }),
}

RUN_DETAIL_EXAMPLE = {
    "run": {
        "id": "run_789", "campaign_id": CID, "status": "completed",
        "scheduled_at": "2026-05-12T09:11:00.000Z", "started_at": "2026-05-12T09:12:00.118Z",
        "completed_at": "2026-05-12T09:14:59.044Z", "current_batch": 1, "total_batches": 1,
        "recipient_count": 2, "batch_size": 1000, "max_attempts": 1, "sent": 2, "failed": 0,
        "skipped": 0, "delivered": 1, "failed_delivery": 0, "has_snapshot": True, "error": None,
        "updated_at": "2026-05-12T09:15:03.500Z",
    },
    "campaign_name": "May promo", "channel_name": "SMS", "channel_provider": "mock",
    "snapshot": {"provider": "mock", "sender_id": "BRIQ", "channel": "SMS", "template": None,
                 "personalized": False, "frozen_at": "2026-05-12T09:12:00.050Z"},
    "batches": [{
        "id": "2f873f99-d722-1e03-b166-269177a650ff", "batch_sequence": 1, "status": "completed",
        "recipient_count": 2, "sent_count": 2, "failed_count": 0,
        "started_at": "2026-05-12T09:12:01.000Z", "completed_at": "2026-05-12T09:12:02.000Z",
        "error_detail": None,
    }],
    "recipients": [
        {"recipient_id": "rcp_1", "phone_number": "255712345678", "recipient_status": "delivered",
         "message_id": "msg_1", "message_status": "delivered",
         "sent_at": "2026-05-12T09:12:01.001Z"},
        {"recipient_id": "rcp_2", "phone_number": "255713000111", "recipient_status": "sent",
         "message_id": "msg_2", "message_status": "sent", "sent_at": "2026-05-12T09:12:01.020Z"},
    ],
    "recipients_truncated": False,
    "recipient_summary": {"total": 2, "pending": 0, "sent": 1, "delivered": 1, "failed": 0,
                          "skipped": 0},
}

SNAPSHOT_EXAMPLE = {
    "run_id": "run_789", "campaign_id": CID, "recipient_count": 1500,
    "content": {"channel": "SMS", "provider": "mock", "sender_id": "BRIQ", "template": None,
                "personalized": False, "body": "Hello, thanks for joining."},
    "cost": {"total_cost": 1500.0, "currency_units": "sms_parts"},
    "frozen_at": "2026-05-12T09:12:00.050Z", "status": "running",
    "started_at": "2026-05-12T09:12:00.118Z", "completed_at": None,
}
SNAPSHOT_EXAMPLES = {
    "default": envelope_example(SNAPSHOT_EXAMPLE),
    "with_recipients": envelope_example(
        {**SNAPSHOT_EXAMPLE, "recipients": ["255712345678", "255713000111"]}),
}

RUN_NOT_FOUND = {
    "campaign": _err("CAMPAIGN_NOT_FOUND", "Campaign not found."),
    "run": _err("RUN_NOT_FOUND", "Run not found in this campaign."),
}
SNAPSHOT_NOT_FOUND = {
    **RUN_NOT_FOUND,
    "snapshot": _err("SNAPSHOT_NOT_FOUND", "No snapshot has been frozen for this run yet."),
}


# -- breakdowns, pages and lists ------------------------------------------------------------


def paged_example(items: list[Any], total: int, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    return {"value": {"success": True, "data": items,
                      "meta": {"total": total, "limit": limit, "offset": offset},
                      "errors": None, "request_id": RID}}


def with_422(
    responses_: dict[int | str, dict[str, Any]], examples: dict[str, dict[str, Any]]
) -> dict[int | str, dict[str, Any]]:
    """Replace the 422 examples of a ``responses()`` block."""
    responses_[422]["content"]["application/json"]["examples"] = {
        k: {"value": v} for k, v in examples.items()}
    return responses_


LIMIT_422 = {"limit_above_max": _err("VALIDATION_ERROR",
                                     "query.limit: Input should be less than or equal to 200")}
STATUS_422 = {"bad_status": _err(
    "VALIDATION_ERROR",
    "query.status: Input should be 'pending', 'running', 'completed' or 'failed'")}

STATS_EXAMPLE = {
    "campaign_id": CID, "run_count": 2,
    "recipient_counts": {"total": 3000, "pending": 450, "sent": 120, "delivered": 2300,
                         "failed": 70, "skipped": 48, "retrying": 12},
    "batch_counts": {"pending": 0, "running": 1, "completed": 2, "failed": 0},
    "retry_breakdown": [{"attempt": 1, "recipients": 2450}, {"attempt": 2, "recipients": 88},
                        {"attempt": 3, "recipients": 12}],
    "in_flight": 120, "exhausted": 9, "receipt_overdue": 4,
    "attempts": {"total": 2668, "average_per_recipient": 0.89},
}
STATS_EXAMPLES = {
    "populated": envelope_example(STATS_EXAMPLE),
    "no_run": envelope_example({
        "campaign_id": CID, "run_count": 0,
        "recipient_counts": {"total": 0, "pending": 0, "sent": 0, "delivered": 0, "failed": 0,
                             "skipped": 0, "retrying": 0},
        "batch_counts": {"pending": 0, "running": 0, "completed": 0, "failed": 0},
        "retry_breakdown": [], "in_flight": 0, "exhausted": 0, "receipt_overdue": 0,
        "attempts": {"total": 0, "average_per_recipient": 0.0},
    }),
}

BATCH_ITEM_EXAMPLE = {
    "batch_id": "2f873f99-d722-1e03-b166-269177a650ff", "run_id": "run_789",
    "batch_sequence": 1, "status": "running", "recipient_count": 1000, "sent_count": 640,
    "failed_count": 6,
    "counters": {"pending": 340, "sent": 80, "delivered": 556, "failed": 8, "skipped": 12,
                 "retrying": 4},
    "created_at": "2026-05-12T09:12:00.900Z", "started_at": "2026-05-12T09:12:01.000Z",
    "completed_at": None, "error_detail": None,
}
BATCHES_EXAMPLES = {
    "page": paged_example([BATCH_ITEM_EXAMPLE], total=2),
    "past_the_end": paged_example([], total=2, offset=100),
}

RECIPIENT_ITEM_EXAMPLE = {
    "recipient_id": "rcp_1", "phone_number": "255712345678",
    "batch_id": "2f873f99-d722-1e03-b166-269177a650ff", "batch_sequence": 1,
    "recipient_status": "delivered", "attempt": 2, "message_id": "msg_1",
    "message_status": "delivered", "sent_at": "2026-05-12T09:12:01.301Z",
    "attempts": [
        {"attempt": 1, "outcome": "failed", "message_id": None,
         "batch_id": "2f873f99-d722-1e03-b166-269177a650ff",
         "submitted_at": "2026-05-12T09:12:01.001Z", "reason": "timeout",
         "delivery_status": None, "delivery_reported_at": None},
        {"attempt": 2, "outcome": "sent", "message_id": "msg_1",
         "batch_id": "2f873f99-d722-1e03-b166-269177a650ff",
         "submitted_at": "2026-05-12T09:12:01.301Z", "reason": None,
         "delivery_status": "delivered", "delivery_reported_at": "2026-05-12T09:12:05.120Z"},
    ],
}
RECIPIENTS_EXAMPLES = {
    "page": paged_example([RECIPIENT_ITEM_EXAMPLE], total=1500),
    "masked_without_pii_read": paged_example(
        [{**RECIPIENT_ITEM_EXAMPLE, "phone_number": "*********678"}], total=1500),
    "past_the_end": paged_example([], total=1500, offset=5000),
}
RECIPIENTS_CSV_EXAMPLE = (
    "recipient_id,phone_number,batch_sequence,batch_id,recipient_status,attempt,attempts,"
    "outcome,reason,message_id,message_status,submitted_at,sent_at\r\n"
    "rcp_1,255712345678,1,2f873f99-d722-1e03-b166-269177a650ff,delivered,2,2,sent,,msg_1,"
    "delivered,2026-05-12T09:12:01.301Z,2026-05-12T09:12:01.301Z\r\n"
)

CAMPAIGN_ITEM_EXAMPLE = {
    "campaign_id": CID, "name": "May promo", "channel": "SMS", "channel_name": "SMS",
    "run_count": 3, "last_run_at": "2026-05-12T09:12:00.118Z",
    "latest_run": {"run_id": "run_789", "status": "completed",
                   "outcome": "completed_with_errors", "run_number": 3},
    "delivery_rate": 0.9365,
}
CAMPAIGNS_EXAMPLES = {"page": paged_example([CAMPAIGN_ITEM_EXAMPLE], total=1)}

RUN_HISTORY_ITEM_EXAMPLE = {
    "run_id": "run_789", "run_number": 3, "status": "completed",
    "outcome": "completed_with_errors", "scheduled_at": "2026-05-12T09:11:00.000Z",
    "started_at": "2026-05-12T09:12:00.118Z", "completed_at": "2026-05-12T09:14:59.044Z",
    "recipient_count": 1500, "total_recipients": 1500, "sent": 1495, "failed": 5, "skipped": 0,
    "delivered": 1400, "failed_delivery": 95, "error": None,
}
RUNS_EXAMPLES = {"history": paged_example([RUN_HISTORY_ITEM_EXAMPLE], total=3)}

PIPELINE_COUNTS_EXAMPLE = {"scheduled": 1500, "submitted": 1500, "sent": 1495, "failed": 5,
                           "skipped": 0, "delivered": 1400}
EXECUTION_RUN_EXAMPLE = {
    "run_id": "run_789", "run_number": 3, "status": "completed",
    "outcome": "completed_with_errors", "started_at": "2026-05-12T09:12:00.118Z",
    "completed_at": "2026-05-12T09:14:59.044Z", "counts": PIPELINE_COUNTS_EXAMPLE,
}
SCHEDULE_EXAMPLE = {"run_id": "run_789", "scheduled_at": "2026-05-12T09:11:00.000Z",
                    "scheduled": False}
EXECUTION_EXAMPLES = {
    "completed": envelope_example({
        "campaign_id": CID, "name": "May promo", "state": "completed",
        "schedule": SCHEDULE_EXAMPLE, "last_execution": EXECUTION_RUN_EXAMPLE,
    }),
    "not_scheduled": envelope_example({
        "campaign_id": CID, "name": "May promo", "state": "not_scheduled", "schedule": None,
        "last_execution": None,
    }),
}
SUMMARY_EXAMPLES = {
    "populated": envelope_example({
        "campaign_id": CID, "name": "May promo", "campaign_type": "broadcast", "channel": "SMS",
        "channel_name": "SMS", "provider": "mock", "updated_at": "2026-05-12T09:15:03.500Z",
        "run_count": 3, "schedule": SCHEDULE_EXAMPLE,
        "latest_execution": {"state": "completed", "run": EXECUTION_RUN_EXAMPLE},
    }),
}
METRICS_EXAMPLES = {
    "latest_run": envelope_example({"campaign_id": CID, "run_id": "run_789",
                                    "counts": PIPELINE_COUNTS_EXAMPLE}),
    "no_run": envelope_example({"campaign_id": CID, "run_id": None,
                                "counts": dict.fromkeys(PIPELINE_COUNTS_EXAMPLE, 0)}),
}


# -- delivery insight ----------------------------------------------------------------------


def _counts(sent: int, failed: int, skipped: int, delivered: int, failed_delivery: int
            ) -> dict[str, int]:
    return {"sent": sent, "failed": failed, "skipped": skipped, "delivered": delivered,
            "failed_delivery": failed_delivery}


TIMELINE_EXAMPLE = {
    "campaign_id": CID, "run_id": "run_789", "bucket": "1m", "bucket_seconds": 60,
    "totals": _counts(1495, 5, 0, 1400, 95),
    "buckets": [
        {"start": "2026-05-12T09:12:00.000Z", "counts": _counts(700, 3, 0, 610, 40),
         "cumulative": _counts(700, 3, 0, 610, 40)},
        {"start": "2026-05-12T09:13:00.000Z", "counts": _counts(795, 2, 0, 760, 50),
         "cumulative": _counts(1495, 5, 0, 1370, 90)},
        {"start": "2026-05-12T09:15:00.000Z", "counts": _counts(0, 0, 0, 30, 5),
         "cumulative": _counts(1495, 5, 0, 1400, 95)},
    ],
}
TIMELINE_EXAMPLES = {"run": envelope_example(TIMELINE_EXAMPLE)}
BUCKET_422 = {"bad_bucket": _err("VALIDATION_ERROR",
                                 "query.bucket: Input should be '1m', '5m' or '1h'")}

FAILURES_EXAMPLE = {
    "campaign_id": CID, "run_id": None, "limit": 20,
    "submits": {
        "total": 5,
        "items": [{"outcome": "failed", "reason": "invalid number", "count": 3},
                  {"outcome": "failed", "reason": "timeout", "count": 2}],
        "other": {"count": 0, "groups": 0},
    },
    "reports": {
        "total": 95,
        "items": [{"status": "undelivered", "error_code": "30003", "count": 60},
                  {"status": "expired", "error_code": None, "count": 35}],
        "other": {"count": 0, "groups": 0},
    },
}
FAILURES_EXAMPLES = {"campaign": envelope_example(FAILURES_EXAMPLE)}

LATENCY_EXAMPLE = {
    "campaign_id": CID, "run_id": "run_789", "exact": False, "delivered": 1400,
    "clock_skewed": 0, "min_ms": 412, "p50_ms": 3120, "p90_ms": 9870, "p99_ms": 61200,
    "max_ms": 250300,
    "histogram": [
        {"from_ms": lo, "to_ms": hi, "count": n} for lo, hi, n in zip(
            (0, 1000, 5000, 10000, 30000, 60000, 300000, 900000, 3600000, 21600000, 86400000,
             259200000),
            (1000, 5000, 10000, 30000, 60000, 300000, 900000, 3600000, 21600000, 86400000,
             259200000, None),
            (20, 900, 350, 100, 16, 14, 0, 0, 0, 0, 0, 0), strict=True)
    ],
}
LATENCY_EXAMPLES = {"run": envelope_example(LATENCY_EXAMPLE)}
