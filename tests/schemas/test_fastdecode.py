"""The compiled fast path never accepts what pydantic rejects, nor changes a value a fold reads.

``schemas.fastdecode`` may only say "accepted" for records ``decode_value``
accepts whole, and its JSON must type (``json_transform`` with the rebuild's
``EVENT_STRUCT``) to exactly what pydantic's ``model_dump_json`` types to, and
validate back into the very models ``decode_value`` returns.
Hypothesis builds events of every type, then breaks them the ways producers
and attackers do (missing fields, wrong JSON types, booleans for integers,
huge integers, odd timestamps, unknown fields, empty strings), alone or in
arrays; whatever the fast path accepts is checked against pydantic.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projector.store.setfold import EVENT_STRUCT
from schemas import decode_value
from schemas.fastdecode import fast_decode
from schemas.union import EVENT_ADAPTER, EVENT_TYPES
from tests.fixtures.golden import golden_lines

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_CON = duckdb.connect()
_CON.execute("SET TimeZone = 'UTC'")


def _typed(docs: list[str]) -> list[Any]:
    row = _CON.execute(
        f"SELECT list_transform(?::VARCHAR[], lambda x: json_transform(x, '{EVENT_STRUCT}'))",
        [docs],
    ).fetchone()
    assert row is not None
    return list(row[0])


def _agree(raw: bytes) -> bool:
    """Assert the fast path is no wider than pydantic; True when it took the record."""
    fast = fast_decode(raw)
    if fast is None:
        return False
    slow = decode_value(raw)
    assert not slow.rejects, (raw, slow.rejects)
    assert [t for t, _ in fast] == [e.type for e in slow.events]
    assert _typed([j for _, j in fast]) == _typed([e.model_dump_json() for e in slow.events])
    # The live path folds small flushes in Python from models rebuilt from this JSON.
    assert [EVENT_ADAPTER.validate_json(j) for _, j in fast] == slow.events
    return True


# -- valid events of every type the fast path knows -----------------------------------

BASE: dict[str, Any] = {
    "event_id": "e-1",
    "occurred_at": "2026-05-12T08:58:52.632Z",
    "workspace_id": "ws",
    "campaign_id": "c-1",
}
VALID: dict[str, dict[str, Any]] = {
    "campaign.defined": {"name": "N", "channel": "SMS", "provider": "p"},
    "run.scheduled": {
        "run_id": "r", "scheduled_at": "2026-05-12T09:00:00+02:00", "recipient_count": 3,
        "batch_size": 2, "total_batches": 2, "max_attempts": 3,
    },
    "run.claimed": {"run_id": "r"},
    "run.snapshot_frozen": {
        "run_id": "r", "frozen_at": "2026-05-12T09:00:00Z", "channel": "SMS", "provider": "p",
        "sender_id": "S", "template": None, "personalized": False, "body": "hi",
        "cost": {"total_cost": 3, "currency_units": "sms_parts"}, "recipient_count": 1,
        "recipients": ["+1"],
    },
    "run.completed": {"run_id": "r"},
    "run.failed": {"run_id": "r", "error": {"code": "X", "message": "m"}},
    "run.cancelled": {"run_id": "r"},
    "batch.created": {
        "run_id": "r", "batch_id": "b", "batch_sequence": 1,
        "recipients": [{"recipient_id": "x", "phone_number": "+1"}],
    },
    "batch.started": {"run_id": "r", "batch_id": "b"},
    "batch.completed": {"run_id": "r", "batch_id": "b"},
    "batch.failed": {"run_id": "r", "batch_id": "b", "error_detail": {"code": "X"}},
    "message.submitted": {
        "run_id": "r", "batch_id": "b", "recipient_id": "x", "phone_number": "+1",
        "outcome": "sent", "message_id": "m", "attempt": 2, "reason": None,
    },
    "message.dlr": {"run_id": "r", "message_id": "m", "status": "delivered", "error_code": 17},
}  # fmt: skip

TIMESTAMPS = [
    "2026-05-12T08:58:52Z", "2026-05-12T08:58:52.1Z", "2026-05-12T08:58:52.123456Z",
    "2026-05-12T08:58:52.1234567Z", "2026-05-12T08:58:52+05:30", "2026-05-12T08:58:52-00:00",
    "2026-05-12T08:58:52+23:59", "2026-05-12T08:58:52+24:00", "2026-05-12T08:58:52+00:60",
    "2026-05-12 08:58:52Z", "2026-05-12t08:58:52z", "2026-05-12T08:58Z", "2026-05-12T08:58:52",
    "2026-02-30T08:58:52Z", "2026-13-01T08:58:52Z", "2026-05-12T24:00:00Z",
    "2026-05-12T23:59:60Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z",
    "٢٠٢٦-05-12T08:58:52Z", "2026-05-12T08:58:52.Z", "20260512T085852Z", "",
]  # fmt: skip
ODD: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 1.5, 2**63 - 1, 2**63, 2**64, -(2**63), "", "x", "0",
    "sent", "delivered", [], ["a"], {}, {"a": 1}, "x" * 129, "é" * 128,
]  # fmt: skip


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(VALID)))
    ev: dict[str, Any] = {"type": kind, **BASE, **VALID[kind]}
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(sorted(ev) + ["unknown", "schema_version", "channel_name"]))
        action = draw(st.sampled_from(["drop", "odd", "timestamp"]))
        if action == "drop":
            ev.pop(field, None)
        elif action == "odd":
            ev[field] = draw(st.sampled_from(ODD))
        else:
            ev[field] = draw(st.sampled_from(TIMESTAMPS))
    return ev


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


def _nested(levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(levels - 1):
        doc = {"k": doc}
    return doc


@FAST
@given(st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=4))
def test_free_form_error_detail_agrees(detail: dict[str, Any]) -> None:
    ev = {"type": "batch.failed", **BASE, **VALID["batch.failed"], "error_detail": detail}
    assert _agree(json.dumps(ev, ensure_ascii=False).encode())


def test_error_detail_deeper_than_the_model_allows_is_left_to_pydantic() -> None:
    from schemas.batches import MAX_DETAIL_DEPTH

    for levels, taken in ((MAX_DETAIL_DEPTH, True), (MAX_DETAIL_DEPTH + 1, False)):
        ev = {"type": "batch.failed", **BASE, **VALID["batch.failed"]}
        raw = orjson.dumps({**ev, "error_detail": _nested(levels)})
        assert _agree(raw) == taken
        assert not decode_value(raw).rejects or not taken


@FAST
@given(st.lists(events(), min_size=1, max_size=4), st.booleans())
def test_whatever_the_fast_path_accepts_pydantic_accepts_with_the_same_fields(
    evs: list[dict[str, Any]], single: bool
) -> None:
    # json, not orjson: integers beyond 64 bits must reach the decoders.
    _agree(json.dumps(evs[0] if single else evs, ensure_ascii=False).encode())


def test_every_valid_event_takes_the_fast_path() -> None:
    assert set(VALID) == EVENT_TYPES
    for kind, fields in VALID.items():
        assert _agree(orjson.dumps({"type": kind, **BASE, **fields})), kind


def test_golden_and_simulated_records_take_the_fast_path() -> None:
    from projector.tools.simulate import generate

    lines = [line.encode() for line in golden_lines()]
    taken = [_agree(line) for line in lines]
    assert all(taken)
    sim = [orjson.dumps(e) for e, _ in zip(generate(5, 40, 7), range(2000), strict=False)]
    for i in range(0, len(sim), 100):
        assert _agree(b"[" + b",".join(sim[i : i + 100]) + b"]")


@pytest.mark.parametrize(
    "raw",
    [
        # duplicate keys: the last one wins in both, or pydantic decides
        b'{"type":"message.dlr","type":"run.claimed","event_id":"e","occurred_at":'
        b'"2026-05-12T08:58:52Z","workspace_id":"w","campaign_id":"c","run_id":"r",'
        b'"message_id":"m","status":"delivered"}',
        b'{"type":"message.dlr","event_id":"e","occurred_at":"2026-05-12T08:58:52Z",'
        b'"workspace_id":"w","campaign_id":"c","run_id":"r","message_id":"m",'
        b'"status":"delivered","status":"bogus"}',
        b'{"type":"message.dlr","event_id":"e","occurred_at":"2026-05-12T08:58:52Z",'
        b'"workspace_id":"w","campaign_id":"c","run_id":"r","message_id":"m",'
        b'"status":"bogus","status":"failed"}',
        # unknown content nested beyond pydantic's parser limit
        b'{"type":"run.claimed","event_id":"e","occurred_at":"2026-05-12T08:58:52Z",'
        b'"workspace_id":"w","campaign_id":"c","run_id":"r","x":' + b"[" * 250 + b"]" * 250 + b"}",
        b'{"type":"batch.failed","event_id":"e","occurred_at":"2026-05-12T08:58:52Z",'
        b'"workspace_id":"w","campaign_id":"c","run_id":"r","batch_id":"b",'
        b'"error_detail":{"a":NaN,"b":Infinity}}',
        b"[]",
        b"",
        b"null",
        b'"text"',
        b'[{"type":"run.claimed"}]',
        b'{"type":"run.claimed","event_id":"e","occurred_at":"2026-05-12T08:58:52Z",'
        b'"workspace_id":"w","campaign_id":"c","run_id":"r\\ud800"}',
        b'{"type":"run.claimed","event_id":"e","occurred_at":"2026-05-12T08:58:52Z",'
        b'"workspace_id":"w","campaign_id":"c","run_id":"r"} trailing',
    ],
)
def test_hostile_records_are_left_to_pydantic_or_agree(raw: bytes) -> None:
    _agree(raw)


def test_a_sent_submit_without_message_id_is_left_to_pydantic() -> None:
    ev = {"type": "message.submitted", **BASE, **VALID["message.submitted"]}
    for missing in (None, ""):
        raw = orjson.dumps({**ev, "message_id": missing})
        assert fast_decode(raw) is None
        assert decode_value(raw).rejects


def test_offsets_are_normalised_to_utc_like_the_models() -> None:
    ev = {"type": "run.claimed", **BASE, "run_id": "r", "occurred_at": "2026-05-12T10:58:52+02:00"}
    fast = fast_decode(orjson.dumps(ev))
    assert fast is not None
    assert orjson.loads(fast[0][1])["occurred_at"] == "2026-05-12T08:58:52Z"
    assert _agree(orjson.dumps(ev))
