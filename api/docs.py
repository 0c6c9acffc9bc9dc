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
    "delivered": 800, "updated_at": "2026-05-12T09:14:02.218Z",
}
STATUS_EXAMPLES = {
    "run": envelope_example(STATUS_EXAMPLE),
    "no_run": envelope_example({"campaign_id": CID, "status": "NO_RUN"}),
}

ANALYTICS_EXAMPLE = {
    "campaign_id": CID, "campaign_run_id": "run_789", "workspace_id": "ws_alpha",
    "total_recipients": 1500, "sent_count": 1495, "failed_count": 5, "skipped_count": 0,
    "cancelled_count": 0, "delivered_count": 1400, "failed_delivery_count": 95,
    "pending_delivery_count": 0, "delivery_rate": 0.9365, "failure_rate": 0.0033,
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
