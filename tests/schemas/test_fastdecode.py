"""The compiled fast path never accepts what pydantic rejects, nor changes a value a fold reads.

``schemas.fastdecode`` may only say "accepted" for records ``decode_value``
accepts whole, and its JSON must type (``json_transform`` with the rebuild's
``EVENT_STRUCT``) to exactly what pydantic's ``model_dump_json`` types to, and
validate back into the very models ``decode_value`` returns. The struct it
hands the fold (``FastEvent.event()``) must read like those models: every
field, nested ones included, equal and of the same type, and no field the
model lacks (the fold asks ``getattr(ev, "run_id", None)``).
Hypothesis builds events of every type, then breaks them the ways producers
and attackers do (missing fields, wrong JSON types, booleans for integers,
huge integers, odd timestamps, unknown fields, empty strings), alone or in
arrays; whatever the fast path accepts is checked against pydantic.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import duckdb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from projector.store.setfold import EVENT_STRUCT
from schemas import decode_value
from schemas.fastdecode import fast_decode, fast_events
from schemas.union import EVENT_ADAPTER, EVENT_MODELS, EVENT_TYPES
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


# Every field any event model has: an event must have exactly its model's.
ALL_FIELDS = sorted({name for model in EVENT_MODELS for name in model.model_fields})


def _same(got: Any, want: Any, path: str) -> None:
    """``got`` reads like ``want``: equal, of the same type, all the way down."""
    if isinstance(want, BaseModel):
        for name in type(want).model_fields:
            _same(getattr(got, name), getattr(want, name), f"{path}.{name}")
    elif isinstance(want, datetime):
        assert type(got) is datetime, path
        # The same instant, aware and in UTC (pydantic's tzinfo is its own UTC class).
        assert got == want and got.utcoffset() == want.utcoffset() == timedelta(0), path
        assert got.isoformat() == want.isoformat(), path
    elif isinstance(want, list):
        assert type(got) is list and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{path}[{i}]")
    elif isinstance(want, dict):
        assert type(got) is dict and list(got) == list(want), path
        for key in want:
            _same(got[key], want[key], f"{path}[{key!r}]")
    else:  # type first: True == 1 == 1.0
        assert type(got) is type(want) and got == want, (path, got, want)


def _reads_like(got: Any, model: BaseModel) -> None:
    """The fast path's struct holds every attribute the fold could read from the model."""
    for name in ALL_FIELDS:
        assert hasattr(got, name) == hasattr(model, name), (model.type, name)
    _same(got, model, model.type)


def _agree(raw: bytes) -> bool:
    """Assert the fast path is no wider than pydantic; True when it took the record."""
    got = fast_events(raw)
    if got is None:
        return False
    fast = got[0]
    slow = decode_value(raw)
    assert not slow.rejects, (raw, slow.rejects)
    assert [e.type for e in fast] == [e.type for e in slow.events]
    assert _typed([e.json for e in fast]) == _typed([e.model_dump_json() for e in slow.events])
    # The archive's readers validate this JSON back into models.
    assert [EVENT_ADAPTER.validate_json(e.json) for e in fast] == slow.events
    # The writer folds small flushes from the structs, not from models.
    for e, model in zip(fast, slow.events, strict=True):
        struct = e.event()
        _reads_like(struct, model)
        assert e.occurred == struct.occurred_at == model.occurred_at
        assert e.occurred_at.endswith("Z") and datetime.fromisoformat(e.occurred_at) == e.occurred
    assert fast_decode(raw) == [(e.type, e.json) for e in fast]
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
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",  # out of range in UTC
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


# -- valid events with varied values: the fold's view of them ---------------------------

IDS = st.text(min_size=1, max_size=8)
TEXT = st.text(max_size=8)
BIGINT = st.integers(-(2**63) + 1, 2**63 - 1)
COUNT = st.integers(0, 2**63 - 1) | st.integers(0, 10_000)
POSITIVE = st.integers(1, 2**63 - 1) | st.integers(1, 10_000)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """RFC 3339 the fast path takes: 0-6 fraction digits, ``Z`` or an offset within a day."""
    at = draw(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31)))
    text = at.strftime("%Y-%m-%dT%H:%M:%S")
    digits = draw(st.integers(0, 6))
    if digits:
        text += "." + f"{at.microsecond:06d}"[:digits]
    minutes = draw(st.none() | st.integers(-(24 * 60 - 1), 24 * 60 - 1))
    if minutes is None:
        return text + "Z"
    sign = draw(st.sampled_from("+-")) if minutes == 0 else "+-"[minutes < 0]
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _body(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional=optional)


FLAT_JSON = st.recursive(
    st.none() | st.booleans() | BIGINT | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
RUN = {"run_id": IDS}
BATCH = {"run_id": IDS, "batch_id": IDS}
BODIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "campaign.defined": _body(
        {"name": TEXT, "channel": TEXT, "provider": TEXT},
        {"channel_name": st.none() | TEXT, "campaign_type": TEXT},
    ),
    "run.scheduled": _body(
        {**RUN, "scheduled_at": timestamps(), "recipient_count": COUNT},
        {"batch_size": POSITIVE, "total_batches": st.none() | COUNT, "max_attempts": POSITIVE},
    ),
    "run.claimed": _body(RUN, {}),
    "run.snapshot_frozen": _body(
        {
            **RUN, "frozen_at": timestamps(), "channel": TEXT, "provider": TEXT,
            "sender_id": TEXT, "template": st.none() | TEXT, "personalized": st.booleans(),
            "body": TEXT, "recipient_count": COUNT,
            "cost": st.fixed_dictionaries({
                "total_cost": st.floats(allow_nan=False, allow_infinity=False)
                | st.integers(-(2**53), 2**53),
                "currency_units": TEXT,
            }),
        },
        {"recipients": st.none() | st.lists(TEXT, max_size=3)},
    ),
    "run.completed": _body(RUN, {}),
    "run.failed": _body(
        {**RUN, "error": st.fixed_dictionaries({"code": TEXT, "message": TEXT})}, {}
    ),
    "run.cancelled": _body(RUN, {}),
    "batch.created": _body(
        {
            **BATCH, "batch_sequence": POSITIVE,
            "recipients": st.lists(
                st.fixed_dictionaries({"recipient_id": IDS, "phone_number": TEXT}), max_size=3
            ),
        },
        {},
    ),
    "batch.started": _body(BATCH, {}),
    "batch.completed": _body(BATCH, {}),
    "batch.failed": _body({**BATCH, "error_detail": st.dictionaries(TEXT, FLAT_JSON)}, {}),
    "message.submitted": _body(
        {
            **BATCH, "recipient_id": IDS, "phone_number": TEXT,
            "outcome": st.sampled_from(["failed", "skipped"]),
        },
        {"message_id": st.none() | TEXT, "attempt": POSITIVE, "reason": st.none() | TEXT},
    ) | _body(
        {**BATCH, "recipient_id": IDS, "phone_number": TEXT, "outcome": st.just("sent"),
         "message_id": IDS},
        {"attempt": POSITIVE, "reason": st.none() | TEXT},
    ),
    "message.dlr": _body(
        {
            **RUN, "message_id": IDS,
            "status": st.sampled_from(
                ["accepted", "buffered", "delivered", "undelivered", "expired", "rejected",
                 "failed"]
            ),
        },
        {"error_code": st.none() | TEXT | BIGINT},
    ),
}  # fmt: skip


@st.composite
def valid_events(draw: st.DrawFn, kind: str | None = None) -> dict[str, Any]:
    kind = kind or draw(st.sampled_from(sorted(BODIES)))
    envelope = draw(
        _body(
            {
                "event_id": st.text(min_size=1, max_size=128) | IDS,
                "occurred_at": timestamps(),
                "workspace_id": IDS,
                "campaign_id": IDS,
            },
            {"schema_version": POSITIVE},
        )
    )
    return {"type": kind, **envelope, **draw(BODIES[kind])}


def test_the_varied_events_cover_every_type() -> None:
    assert set(BODIES) == EVENT_TYPES


@pytest.mark.parametrize("kind", sorted(BODIES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fold_reads_the_fast_struct_as_it_would_read_the_model(
    kind: str, data: st.DataObject
) -> None:
    """Valid events the fast path is meant to take: it takes them, and the fold's view agrees."""
    ev = data.draw(valid_events(kind))
    assert _agree(json.dumps(ev, ensure_ascii=data.draw(st.booleans())).encode())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_events(), min_size=1, max_size=5))
def test_arrays_of_varied_events_read_alike(evs: list[dict[str, Any]]) -> None:
    assert _agree(json.dumps(evs).encode())


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
