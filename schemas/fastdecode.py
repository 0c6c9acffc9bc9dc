"""A compiled fast path for decoding records in bulk (replays, the archiver), never the judge.

``schemas.decode.decode_value`` is the contract's only validator: what it
rejects is dead-lettered by the live path, and a rebuild or the archive must
accept exactly the events the live path accepted. Its cost (pydantic
validation plus a ``model_dump_json``) bounded a replay from Kafka and the
archiver, so records are first offered to this decoder: msgspec structs that
mirror the event models, compiled to C, several times faster than pydantic
with the JSON included (docs/decisions/0012-compiled-fast-decoder.md).

It only ever says "accepted, and here is the canonical JSON" or "ask
pydantic" (``None``), never "rejected", and it is deliberately narrower than
the models, so that whatever it accepts the models accept with the same
values (held by ``tests/schemas/test_fastdecode.py``, property-based, through the
same DuckDB typing the rebuild uses). A record goes to pydantic when:

* any object holds a field the contract does not name (the models ignore
  unknown fields, but unknown content can be nested beyond the parsers'
  limits, which the models reject and a skipping decoder would not), except
  inside ``batch.failed``'s free-form ``error_detail``;
* a ``batch.failed`` event's free-form ``error_detail`` is nested deeper
  than the model allows (the same walk, ``schemas.batches.depth``);
* a timestamp is not ``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM|-HH:MM)`` naming a
  real date and time, or an integer exceeds BIGINT;
* a submit with ``outcome: sent`` lacks a non-empty ``message_id``;
* it is empty, too large, not JSON, or anything msgspec refuses.

The JSON it returns differs from ``model_dump_json`` in formatting only
(field order, timestamps as received when already UTC), not in any value a
fold reads.

The writer's Python fold reads ``FastEvent.event()``: the canonical JSON
decoded back into its struct, every attribute the model's value (``type``,
timestamps as UTC datetimes, defaults filled, nested objects), so an event
is validated once, not again by pydantic. Converting on demand rather than
keeping the first decode's struct keeps a buffered event as small as before;
large flushes merge the JSON in SQL and never convert
(docs/decisions/0012-compiled-fast-decoder.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, Literal, NamedTuple, Union

import msgspec

from schemas.batches import MAX_DETAIL_DEPTH, depth
from schemas.decode import DEFAULT_MAX_BYTES

_INT_MAX: Final = 2**63 - 1
# ASCII digits only: ``\d`` would admit other scripts' digits.
# Offsets within +-23:59 (Python would take a minute of 60).
RFC3339: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)

Timestamp = Annotated[str, msgspec.Meta(pattern=RFC3339)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=_INT_MAX)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=_INT_MAX)]


# gc=False: smaller, and never tracked by the cyclic collector (decoded JSON
# cannot form a cycle).
class _Event(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True, gc=False):
    """An event as decoded; ``FastEvent.event()`` gives its timestamp fields the
    parsed UTC datetimes the models hold, in place of the text."""

    type: ClassVar[str]  # the tag (set below), as the models' ``type`` field reads
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    occurred_at: Timestamp
    workspace_id: NonEmpty
    campaign_id: NonEmpty
    schema_version: Positive = 1


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    pass


class CampaignDefined(_Event, tag="campaign.defined", kw_only=True):
    name: str
    channel: str
    channel_name: str | None = None
    provider: str
    campaign_type: str = "broadcast"


class RunScheduled(_Event, tag="run.scheduled", kw_only=True):
    run_id: NonEmpty
    scheduled_at: Timestamp
    recipient_count: Count
    batch_size: Positive = 1000
    total_batches: Count | None = None
    max_attempts: Positive = 1


class RunClaimed(_Event, tag="run.claimed", kw_only=True):
    run_id: NonEmpty


class SnapshotCost(_Strict):
    total_cost: float
    currency_units: str


class RunSnapshotFrozen(_Event, tag="run.snapshot_frozen", kw_only=True):
    run_id: NonEmpty
    frozen_at: Timestamp
    channel: str
    provider: str
    sender_id: str
    template: str | None
    personalized: bool
    body: str
    cost: SnapshotCost
    recipient_count: Count
    recipients: list[str] | None = None


class RunCompleted(_Event, tag="run.completed", kw_only=True):
    run_id: NonEmpty


class ErrorInfo(_Strict):
    code: str
    message: str


class RunFailed(_Event, tag="run.failed", kw_only=True):
    run_id: NonEmpty
    error: ErrorInfo


class RunCancelled(_Event, tag="run.cancelled", kw_only=True):
    run_id: NonEmpty


class BatchRecipient(_Strict):
    recipient_id: NonEmpty
    phone_number: str


class BatchCreated(_Event, tag="batch.created", kw_only=True):
    run_id: NonEmpty
    batch_id: NonEmpty
    batch_sequence: Positive
    recipients: list[BatchRecipient]


class BatchStarted(_Event, tag="batch.started", kw_only=True):
    run_id: NonEmpty
    batch_id: NonEmpty


class BatchCompleted(_Event, tag="batch.completed", kw_only=True):
    run_id: NonEmpty
    batch_id: NonEmpty


class BatchFailed(_Event, tag="batch.failed", kw_only=True):
    run_id: NonEmpty
    batch_id: NonEmpty
    error_detail: dict[str, Any]


class MessageSubmitted(_Event, tag="message.submitted", kw_only=True):
    run_id: NonEmpty
    batch_id: NonEmpty
    recipient_id: NonEmpty
    phone_number: str
    outcome: Literal["sent", "failed", "skipped"]
    message_id: str | None = None
    attempt: Positive = 1
    reason: str | None = None


class MessageDlr(_Event, tag="message.dlr", kw_only=True):
    run_id: NonEmpty
    message_id: NonEmpty
    status: Literal[
        "accepted", "buffered", "delivered", "undelivered", "expired", "rejected", "failed"
    ]
    # Carrier codes come as numbers or strings; the model keeps strings.
    error_code: str | Annotated[int, msgspec.Meta(ge=-_INT_MAX, le=_INT_MAX)] | None = None


# Every event struct above, dispatched on ``type`` (tests check they cover the models).
_Any = Union[tuple(_Event.__subclasses__())]  # noqa: UP007 (built at run time)
for _kind in _Event.__subclasses__():
    _kind.type = _kind.__struct_config__.tag  # type: ignore[assignment]  # a str for events
_ONE: Final = msgspec.json.Decoder(_Any)
_MANY: Final = msgspec.json.Decoder(list[_Any])
_ENCODE: Final = msgspec.json.Encoder().encode

_EXTRA_TIMESTAMPS: Final[dict[type, tuple[str, ...]]] = {
    RunScheduled: ("scheduled_at",),
    RunSnapshotFrozen: ("frozen_at",),
}


def _utc(text: str) -> tuple[str, datetime] | None:
    """The timestamp in UTC, as text and as a datetime, or None when it names no
    real instant (the models decide)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if text[-1] == "Z":
        return text, parsed
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:  # outside years 1-9999 once in UTC
        return None
    return utc.isoformat().replace("+00:00", "Z"), utc


def _settle(ev: _Event) -> datetime | None:
    """Apply the models' normalisations in place; the event's instant (UTC), or
    None when the models must decide."""
    at = _utc(ev.occurred_at)
    if at is None:
        return None
    ev.occurred_at, occurred = at
    kind = type(ev)
    if kind is MessageDlr:
        if type(ev.error_code) is int:  # type: ignore[attr-defined]
            ev.error_code = str(ev.error_code)  # type: ignore[attr-defined]
        return occurred
    if kind is MessageSubmitted:
        sure = ev.outcome != "sent" or bool(ev.message_id)  # type: ignore[attr-defined]
        return occurred if sure else None
    if kind is CampaignDefined:
        if ev.channel_name is None:  # type: ignore[attr-defined]
            ev.channel_name = ev.channel  # type: ignore[attr-defined]
        return occurred
    if kind is BatchFailed:
        shallow = depth(ev.error_detail) <= MAX_DETAIL_DEPTH  # type: ignore[attr-defined]
        return occurred if shallow else None
    for name in _EXTRA_TIMESTAMPS.get(kind, ()):
        value = _utc(getattr(ev, name))
        if value is None:
            return None
        setattr(ev, name, value[0])
    return occurred


class FastEvent(NamedTuple):
    """One accepted event as the fast path gives it (all a rebuild or the archive needs)."""

    type: str
    campaign_id: str
    occurred_at: str  # UTC, ``...Z``, as the model normalises it
    json: str  # canonical JSON: the same values as ``model_dump_json``
    occurred: datetime  # ``occurred_at`` parsed (the check parsed it already)

    def event(self) -> _Event:
        """The event for the fold: every attribute it reads equals the model's.

        A new struct per call, parsed from the canonical JSON: that was
        accepted and normalised already, so this converts (msgspec, no
        pydantic), it does not judge again.
        """
        ev: _Event = _ONE.decode(self.json)
        ev.occurred_at = self.occurred  # type: ignore[assignment]
        for name in _EXTRA_TIMESTAMPS.get(type(ev), ()):
            setattr(ev, name, datetime.fromisoformat(getattr(ev, name)))
        return ev


def fast_events(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[FastEvent], bool] | None:
    """The record's events and whether it is an array, or None: ask ``decode_value``."""
    if len(data) > max_bytes:
        return None
    try:
        is_array = data.lstrip(b" \t\r\n")[:1] == b"["
        if is_array:
            events: list[_Event] = _MANY.decode(data)
            if not events:
                return None
        else:
            events = [_ONE.decode(data)]
    except (msgspec.DecodeError, RecursionError):
        return None
    out: list[FastEvent] = []
    for ev in events:
        occurred = _settle(ev)
        if occurred is None:
            return None
        tag: str = ev.__struct_config__.tag  # type: ignore[assignment]
        out.append(FastEvent(tag, ev.campaign_id, ev.occurred_at, _ENCODE(ev).decode(), occurred))
    return out, is_array


def fast_decode(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[tuple[str, str]] | None:
    """(type, canonical JSON) for every event of the record, or None: ask ``decode_value``."""
    got = fast_events(data, max_bytes=max_bytes)
    return None if got is None else [(ev.type, ev.json) for ev in got[0]]
