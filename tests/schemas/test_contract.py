"""Event contract v1: golden events, malformed records, lenient cases, schema files."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    TOPIC_KIND_OF_TYPE,
    BatchCreated,
    CampaignDefined,
    MessageDlr,
    MessageSubmitted,
    RejectCode,
    RunScheduled,
    decode_value,
)
from schemas.export import export_schemas, render_schemas
from service.commands.export_schemas import run as run_cli

DATA = Path(__file__).parents[1] / "data"
GOLDEN = DATA / "golden" / "basic" / "events.jsonl"
DOCS_SCHEMAS = Path(__file__).parents[2] / "docs" / "schemas"

ENVELOPE = {
    "event_id": "evt-1",
    "occurred_at": "2026-05-12T12:00:00.000Z",
    "workspace_id": "ws_alpha",
    "campaign_id": "cmp-1",
}

# One minimal valid body per type; the factory fills the envelope.
BODIES: dict[str, dict[str, Any]] = {
    "campaign.defined": {"name": "Promo", "channel": "SMS", "provider": "mock"},
    "run.scheduled": {
        "run_id": "run-1",
        "scheduled_at": "2026-05-12T12:00:00Z",
        "recipient_count": 3,
    },
    "run.claimed": {"run_id": "run-1"},
    "run.snapshot_frozen": {
        "run_id": "run-1",
        "frozen_at": "2026-05-12T12:00:00Z",
        "channel": "SMS",
        "provider": "mock",
        "sender_id": "BRIQ",
        "template": None,
        "personalized": False,
        "body": "Hello",
        "cost": {"total_cost": 3, "currency_units": "sms_parts"},
        "recipient_count": 3,
    },
    "run.completed": {"run_id": "run-1"},
    "run.failed": {"run_id": "run-1", "error": {"code": "ENGINE", "message": "crashed"}},
    "run.cancelled": {"run_id": "run-1"},
    "batch.created": {
        "run_id": "run-1",
        "batch_id": "b-1",
        "batch_sequence": 1,
        "recipients": [{"recipient_id": "r-1", "phone_number": "255700000001"}],
    },
    "batch.started": {"run_id": "run-1", "batch_id": "b-1"},
    "batch.completed": {"run_id": "run-1", "batch_id": "b-1"},
    "batch.failed": {"run_id": "run-1", "batch_id": "b-1", "error_detail": {"why": "timeout"}},
    "message.submitted": {
        "run_id": "run-1",
        "batch_id": "b-1",
        "recipient_id": "r-1",
        "phone_number": "255700000001",
        "outcome": "sent",
        "message_id": "m-1",
    },
    "message.dlr": {"run_id": "run-1", "message_id": "m-1", "status": "delivered"},
}

_DROP = object()


def make_event(type_: str = "run.scheduled", **overrides: Any) -> dict[str, Any]:
    """A valid event dict of ``type_``; ``field=_DROP`` removes a field."""
    event = {**ENVELOPE, "type": type_, **BODIES[type_], **overrides}
    return {k: v for k, v in event.items() if v is not _DROP}


def encode(value: Any) -> bytes:
    return orjson.dumps(value)


@pytest.fixture
def event_factory() -> Callable[..., dict[str, Any]]:
    return make_event


def golden_lines() -> list[bytes]:
    return [line for line in GOLDEN.read_bytes().splitlines() if line.strip()]


# --- golden events -------------------------------------------------------------


def test_every_golden_event_validates_and_has_a_topic() -> None:
    lines = golden_lines()
    assert len(lines) == 147
    for line in lines:
        decoded = decode_value(line)
        assert decoded.rejects == [], line
        (event,) = decoded.events
        assert event.type == json.loads(line)["type"]
        assert TOPIC_KIND_OF_TYPE[event.type] in {"runs", "batches", "submits", "dlrs"}
        assert event.occurred_at.tzinfo is not None
        assert event.occurred_at.utcoffset().total_seconds() == 0


def test_golden_events_as_one_array_record() -> None:
    lines = golden_lines()
    decoded = decode_value(b"[" + b",".join(lines) + b"]")
    assert decoded.rejects == []
    assert [e.event_id for e in decoded.events] == [json.loads(line)["event_id"] for line in lines]


def test_topic_table_covers_every_type() -> None:
    assert set(TOPIC_KIND_OF_TYPE) == EVENT_TYPES == set(BODIES)
    assert TOPIC_KIND_OF_TYPE["campaign.defined"] == "runs"
    assert TOPIC_KIND_OF_TYPE["batch.failed"] == "batches"
    assert TOPIC_KIND_OF_TYPE["message.submitted"] == "submits"
    assert TOPIC_KIND_OF_TYPE["message.dlr"] == "dlrs"


@pytest.mark.parametrize("type_", sorted(BODIES))
def test_minimal_event_of_each_type_validates(type_: str) -> None:
    decoded = decode_value(encode(make_event(type_)))
    assert decoded.rejects == []
    assert decoded.events[0].type == type_


# --- malformed records -----------------------------------------------------------


def _nest(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def _arr(*items: Any) -> bytes:
    return encode(list(items))


GOOD = make_event("run.claimed")

# (id, record, expected reason prefix incl. field, index of the reject, events still decoded)
MALFORMED: list[tuple[str, bytes | str, str, int | None, int]] = [
    ("bad_json", b'{"type": "run.claimed",', "invalid_json:", None, 0),
    ("empty_record", b"", "invalid_json:", None, 0),
    ("invalid_utf8", b'{"type": "run.claimed", "run_id": "\xff\xfe"}', "invalid_json:", None, 0),
    ("lone_surrogate_str", '{"event_id": "\ud800"}', "invalid_json:", None, 0),
    ("top_level_string", b'"run.claimed"', "not_an_object: the record is a JSON string", None, 0),
    ("top_level_number", b"42", "not_an_object: the record is a JSON number", None, 0),
    ("top_level_null", b"null", "not_an_object: the record is a JSON null", None, 0),
    ("empty_array", b"[]", "empty_array:", None, 0),
    ("empty_array_spaces", b" [ ] ", "empty_array:", None, 0),
    (
        "one_bad_among_good",
        _arr(GOOD, make_event("run.claimed", run_id=_DROP), GOOD),
        "missing_field: run_id",
        1,
        2,
    ),
    ("array_item_not_object", _arr(GOOD, 7), "not_an_object: item 1 is a JSON number", 1, 1),
    ("missing_event_id", encode(make_event(event_id=_DROP)), "missing_field: event_id", None, 0),
    (
        "event_id_too_long",
        encode(make_event(event_id="e" * 129)),
        "invalid_field: event_id: String should have at most 128 characters",
        None,
        0,
    ),
    ("event_id_empty", encode(make_event(event_id="")), "invalid_field: event_id:", None, 0),
    (
        "event_id_number",
        encode(make_event(event_id=12)),
        "invalid_field: event_id: Input should be a valid string",
        None,
        0,
    ),
    (
        "unknown_type",
        encode(make_event(type="run.exploded")),
        "unknown_type: 'run.exploded'",
        None,
        0,
    ),
    ("missing_type", encode(make_event(type=_DROP)), "missing_field: type", None, 0),
    (
        "recipient_count_string",
        encode(make_event(recipient_count="3")),
        "invalid_field: recipient_count: Input should be a valid integer",
        None,
        0,
    ),
    (
        "recipient_count_negative",
        encode(make_event(recipient_count=-1)),
        "invalid_field: recipient_count: Input should be greater than or equal to 0",
        None,
        0,
    ),
    (
        "recipient_count_bool",
        encode(make_event(recipient_count=True)),
        "invalid_field: recipient_count: Input should be a valid integer",
        None,
        0,
    ),
    (
        "batch_size_zero",
        encode(make_event(batch_size=0)),
        "invalid_field: batch_size: Input should be greater than or equal to 1",
        None,
        0,
    ),
    (
        "attempt_float",
        encode(make_event("message.submitted", attempt=1.5)),
        "invalid_field: attempt: Input should be a valid integer",
        None,
        0,
    ),
    (
        "attempt_zero",
        encode(make_event("message.submitted", attempt=0)),
        "invalid_field: attempt: Input should be greater than or equal to 1",
        None,
        0,
    ),
    (
        "personalized_yes",
        encode(make_event("run.snapshot_frozen", personalized="yes")),
        "invalid_field: personalized: Input should be a valid boolean",
        None,
        0,
    ),
    (
        "naive_timestamp",
        encode(make_event(occurred_at="2026-05-12T12:00:00")),
        "invalid_field: occurred_at: Input should have timezone info",
        None,
        0,
    ),
    (
        "not_a_timestamp",
        encode(make_event(scheduled_at="yesterday")),
        "invalid_field: scheduled_at: Input should be a valid datetime",
        None,
        0,
    ),
    (
        "timestamp_as_number",
        encode(make_event(occurred_at=1778587200)),
        "invalid_field: occurred_at: Input should be an RFC 3339 timestamp",
        None,
        0,
    ),
    (
        "outcome_not_in_enum",
        encode(make_event("message.submitted", outcome="queued")),
        "invalid_field: outcome: Input should be 'sent', 'failed' or 'skipped'",
        None,
        0,
    ),
    (
        "sent_without_message_id",
        encode(make_event("message.submitted", message_id=_DROP)),
        "missing_field: message_id",
        None,
        0,
    ),
    (
        "sent_with_null_message_id",
        encode(make_event("message.submitted", message_id=None)),
        "missing_field: message_id",
        None,
        0,
    ),
    (
        "sent_with_empty_message_id",
        encode(make_event("message.submitted", message_id="")),
        "invalid_field: message_id:",
        None,
        0,
    ),
    (
        "dlr_status_unknown",
        encode(make_event("message.dlr", status="lost")),
        "invalid_field: status: Input should be 'accepted'",
        None,
        0,
    ),
    (
        "batch_recipients_not_list",
        encode(make_event("batch.created", recipients={"recipient_id": "r-1"})),
        "invalid_field: recipients: Input should be a valid array",
        None,
        0,
    ),
    (
        "batch_recipient_missing_phone",
        encode(make_event("batch.created", recipients=[{"recipient_id": "r-1"}])),
        "missing_field: recipients.0.phone_number",
        None,
        0,
    ),
    (
        "batch_sequence_zero",
        encode(make_event("batch.created", batch_sequence=0)),
        "invalid_field: batch_sequence: Input should be greater than or equal to 1",
        None,
        0,
    ),
    (
        "cost_missing_units",
        encode(make_event("run.snapshot_frozen", cost={"total_cost": 1})),
        "missing_field: cost.currency_units",
        None,
        0,
    ),
    (
        "run_failed_error_not_object",
        encode(make_event("run.failed", error="boom")),
        "invalid_field: error: Input should be an object",
        None,
        0,
    ),
    (
        "too_large",
        encode(make_event(padding="x" * 1_000_001)),
        "too_large: record is",
        None,
        0,
    ),
    ("deep_array", b"[" * 100_000, "too_deep:", None, 0),
    ("deep_object", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "too_deep:", None, 0),
    # Parses (orjson: 1,024 levels), but the item cannot be serialised again.
    ("deep_array_item", b"[" * 300 + b"]" * 300, "too_deep: item 0", None, 0),
    (
        "deep_item_beside_a_good_event",
        b"[" + encode(GOOD) + b"," + b'{"a":' * 600 + b"1" + b"}" * 600 + b"]",
        "too_deep: item 1",
        None,
        0,
    ),
    (
        "deep_error_detail",
        encode(make_event("batch.failed", error_detail=_nest(40))),
        "too_deep: error_detail:",
        None,
        0,
    ),
    (
        "occurred_at_before_year_1_in_utc",
        encode(make_event(occurred_at="0001-01-01T00:00:00+01:00")),
        "invalid_field: occurred_at:",
        None,
        0,
    ),
    (
        "scheduled_at_after_year_9999_in_utc",
        encode(make_event("run.scheduled", scheduled_at="9999-12-31T23:59:59-01:00")),
        "invalid_field: scheduled_at:",
        None,
        0,
    ),
]


@pytest.mark.parametrize(
    ("record", "prefix", "index", "n_events"),
    [pytest.param(r, p, i, n, id=name) for name, r, p, i, n in MALFORMED],
)
def test_malformed_record_is_rejected_with_reason(
    record: bytes | str, prefix: str, index: int | None, n_events: int
) -> None:
    decoded = decode_value(record)
    assert len(decoded.rejects) == 1, decoded.rejects
    (reject,) = decoded.rejects
    assert reject.reason.startswith(prefix), reject.reason
    assert reject.code == prefix.partition(":")[0]
    assert reject.index == index
    assert len(decoded.events) == n_events
    assert isinstance(reject.raw, bytes)
    if index is None:
        expected_raw = (
            record.encode("utf-8", "surrogatepass") if isinstance(record, str) else record
        )
        assert reject.raw == expected_raw


def test_malformed_table_is_large_enough() -> None:
    assert len(MALFORMED) >= 25


def _deep(levels: int, shape: str) -> bytes:
    if shape == "array":
        return b"[" * levels + b"]" * levels
    if shape == "object":
        return b'{"a":' * levels + b"1" + b"}" * levels
    # an event whose unknown field nests ``levels`` deep (the models ignore its value)
    return encode(make_event("run.claimed"))[:-1] + b',"x":' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize("shape", ["array", "object", "event"])
@pytest.mark.parametrize("levels", [199, 200, 253, 254, 255, 256, 300, 1000, 1021, 1022, 1023])
@pytest.mark.parametrize("beside", [0, 1, 2], ids=["alone", "after_good", "between_good"])
def test_nesting_at_any_depth_is_a_reject_never_an_exception(
    shape: str, levels: int, beside: int
) -> None:
    """An item is judged on its own, or the record is rejected whole ``too_deep``
    (past the parsers' limits); ``decode_value`` itself never raises."""
    good = encode(GOOD)
    items = [good] * beside + [_deep(levels, shape)] + [good] * (beside // 2)
    record = b"[" + b",".join(items) + b"]"
    decoded = decode_value(record)
    assert all(r.code in set(RejectCode) for r in decoded.rejects), decoded.rejects
    if any(r.index is None for r in decoded.rejects):
        (reject,) = decoded.rejects
        assert reject.code == "too_deep" and reject.raw == record, reject.reason
        assert decoded.events == []
    else:  # the deep item judged alone (or accepted: unknown fields are ignored)
        assert [r.index for r in decoded.rejects] in ([], [beside])
        assert len(decoded.events) == len(items) - len(decoded.rejects)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (b"[" * 254 + b"]" * 254, "not_an_object: item 1"),
        (b"[" * 255 + b"]" * 255, "too_deep: item 1 cannot be re-serialised"),
        (b"[" * 1022 + b"]" * 1022, "too_deep: item 1 cannot be re-serialised"),
        (b'{"a":' * 1022 + b"1" + b"}" * 1022, "too_deep: item 1 cannot be re-serialised"),
        (b"[" * 1023 + b"]" * 1023, "too_deep: item 1 cannot be re-serialised"),
        (b"[" * 1024 + b"]" * 1024, "too_deep: JSON nesting exceeds the parser limit"),
    ],
    ids=["254", "255", "1022", "1022-object", "1023", "1024"],
)
def test_where_the_nesting_limits_fall(item: bytes, reason: str) -> None:
    """Item depths inside a one-level array record: up to 254 the item gets its own
    reject (its good neighbour is kept); then orjson can parse it but not serialise it
    again, so the record goes whole; past 1,023 (a record 1,025 deep) orjson cannot
    parse it."""
    decoded = decode_value(b"[" + encode(GOOD) + b"," + item + b"]")
    assert [r.reason[: len(reason)] for r in decoded.rejects] == [reason]
    assert len(decoded.events) == (1 if decoded.rejects[0].index == 1 else 0)


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+00:01", "0001-01-01T00:59:59+01:00", "9999-12-31T23:59:59-00:01"]
)
@pytest.mark.parametrize("field", ["occurred_at", "scheduled_at"])
def test_a_timestamp_outside_the_calendar_in_utc_is_a_reject(field: str, stamp: str) -> None:
    """Valid RFC 3339, but before year 1 or after 9999 once converted to UTC: a
    reject (converting raised OverflowError out of ``decode_value``)."""
    (reject,) = decode_value(encode(make_event("run.scheduled", **{field: stamp}))).rejects
    assert reject.reason.startswith(f"invalid_field: {field}: "), reject.reason
    for at in ("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59-00:00"):  # the edges: accepted
        assert decode_value(encode(make_event("run.scheduled", **{field: at}))).events


@pytest.mark.parametrize(
    ("type_", "field"),
    [("run.scheduled", "recipient_count"), ("run.scheduled", "batch_size"),
     ("run.scheduled", "max_attempts"), ("message.submitted", "attempt"),
     ("batch.created", "batch_sequence"), ("run.claimed", "schema_version")],
)  # fmt: skip
def test_an_integer_beyond_bigint_is_a_reject(type_: str, field: str) -> None:
    """Stored as BIGINT: a larger count passed validation and then failed every
    flush of its micro-batch (a poison pill at the store); now a reject."""
    (reject,) = decode_value(encode(make_event(type_, **{field: 2**63}))).rejects
    assert reject.reason.startswith(f"invalid_field: {field}: "), reject.reason
    assert decode_value(encode(make_event(type_, **{field: 2**63 - 1}))).events


def test_array_keeps_good_events_in_order_and_reserialises_the_bad_one() -> None:
    bad = make_event("message.dlr", status="lost", event_id="bad")
    record = _arr(make_event(event_id="a"), bad, make_event("run.claimed", event_id="c"))
    decoded = decode_value(record)
    assert [e.event_id for e in decoded.events] == ["a", "c"]
    (reject,) = decoded.rejects
    assert reject.index == 1
    assert orjson.loads(reject.raw) == bad


def test_every_bad_item_gets_its_own_reject() -> None:
    record = _arr(make_event(event_id=_DROP), GOOD, make_event(type="nope"), "x")
    decoded = decode_value(record)
    assert len(decoded.events) == 1
    assert [(r.index, r.code) for r in decoded.rejects] == [
        (0, "missing_field"),
        (2, "unknown_type"),
        (3, "not_an_object"),
    ]


def test_max_bytes_is_configurable() -> None:
    record = encode(GOOD)
    assert decode_value(record, max_bytes=len(record)).events
    assert decode_value(record, max_bytes=len(record) - 1).rejects[0].code == "too_large"


def test_several_errors_name_the_first_and_list_the_others() -> None:
    record = encode(make_event(recipient_count=-1, batch_size=0, run_id=_DROP))
    (reject,) = decode_value(record).rejects
    assert reject.reason.startswith("missing_field: run_id (also: ")
    assert "recipient_count" in reject.reason and "batch_size" in reject.reason


# --- lenient cases ---------------------------------------------------------------


def test_unknown_extra_fields_are_ignored() -> None:
    record = encode(make_event(future_field={"a": [1, 2]}, cost_center="x"))
    (event,) = decode_value(record).events
    assert isinstance(event, RunScheduled)
    assert not hasattr(event, "future_field")


@pytest.mark.parametrize("outcome", ["failed", "skipped"])
def test_unsent_submit_without_message_id_is_valid(outcome: str) -> None:
    record = encode(
        make_event("message.submitted", outcome=outcome, message_id=_DROP, reason="invalid_number")
    )
    (event,) = decode_value(record).events
    assert isinstance(event, MessageSubmitted)
    assert event.message_id is None and event.attempt == 1 and event.reason == "invalid_number"


def test_channel_name_defaults_to_channel() -> None:
    (event,) = decode_value(encode(make_event("campaign.defined"))).events
    assert isinstance(event, CampaignDefined)
    assert event.channel_name == "SMS" and event.campaign_type == "broadcast"
    (named,) = decode_value(encode(make_event("campaign.defined", channel_name="Text"))).events
    assert isinstance(named, CampaignDefined) and named.channel_name == "Text"
    built = CampaignDefined(**{**make_event("campaign.defined"), "channel": "WhatsApp"})
    assert built.channel_name == "WhatsApp"


def test_offset_timestamp_is_normalised_to_utc() -> None:
    record = encode(make_event(occurred_at="2026-05-12T15:00:00.250+03:00"))
    (event,) = decode_value(record).events
    assert event.occurred_at == datetime(2026, 5, 12, 12, 0, 0, 250_000, tzinfo=UTC)
    assert event.occurred_at.utcoffset().total_seconds() == 0
    assert event.occurred_at.isoformat() == "2026-05-12T12:00:00.250000+00:00"


def test_run_scheduled_defaults_and_derived_total() -> None:
    (event,) = decode_value(encode(make_event(recipient_count=2501))).events
    assert isinstance(event, RunScheduled)
    assert (event.batch_size, event.max_attempts, event.total_batches) == (1000, 1, None)
    assert event.declared_total_batches == 3
    assert event.schema_version == 1


def test_dlr_error_code_int_becomes_str() -> None:
    (event,) = decode_value(encode(make_event("message.dlr", error_code=17))).events
    assert isinstance(event, MessageDlr) and event.error_code == "17"
    (event,) = decode_value(encode(make_event("message.dlr"))).events
    assert isinstance(event, MessageDlr) and event.error_code is None


def test_models_are_frozen_and_accept_python_values() -> None:
    event = EVENT_ADAPTER.validate_python(make_event("batch.created"))
    assert isinstance(event, BatchCreated)
    assert event.recipients[0].phone_number == "255700000001"
    with pytest.raises(ValueError):
        event.batch_id = "other"  # type: ignore[misc]


# --- JSON Schema files -----------------------------------------------------------


def test_schema_files_on_disk_are_not_stale(tmp_path: Path) -> None:
    written = export_schemas(tmp_path)
    assert {p.name for p in written} == {f"{t}.json" for t in EVENT_TYPES} | {"event.json"}
    for path in written:
        on_disk = DOCS_SCHEMAS / path.name
        assert on_disk.exists(), f"{on_disk} missing: run `make schemas`"
        assert on_disk.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"{on_disk} is stale: run `make schemas`"
        )


def test_export_is_deterministic_and_json() -> None:
    first, second = render_schemas(), render_schemas()
    assert first == second
    for content in first.values():
        assert content.endswith("}\n")
        json.loads(content)


def test_cli_check_reports_stale_files_without_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(out=str(tmp_path), check=True)
    assert run_cli(args, None) == 1
    assert "run.claimed.json" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

    assert run_cli(argparse.Namespace(out=str(tmp_path), check=False), None) == 0
    assert run_cli(args, None) == 0
    (tmp_path / "run.claimed.json").write_text("{}\n")
    assert run_cli(args, None) == 1
    assert "run.claimed.json" in capsys.readouterr().err


def test_examples_in_the_producer_guide_validate() -> None:
    guide = (Path(__file__).parents[2] / "docs" / "events.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", guide, re.S)
    lines = [line for block in blocks for line in block.strip().splitlines()]
    assert len(lines) >= len(EVENT_TYPES)
    seen = set()
    for line in lines:
        decoded = decode_value(line)
        assert decoded.rejects == [], line
        seen.add(decoded.events[0].type)
    assert seen == EVENT_TYPES
