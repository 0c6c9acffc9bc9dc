"""Decode one Kafka record value into events and per-item rejects.

A record is one event object or a JSON array of event objects. The decoder
never raises on content: whatever it cannot accept comes back as a ``Reject``
with a stable reason code (``schemas.errors.RejectCode``) for the dead-letter
topic, so one bad event never blocks the partition.

Fast path first: the whole record goes through pydantic's ``validate_json``
(Rust parsing and validation in one pass, dispatching on ``type``). Only when
that fails is the record parsed with orjson and each item validated on its own,
so the good events of a mixed array still get through and each bad one gets
its own reason.

Nesting: known fields nest at most 4 levels, except ``batch.failed``'s free-form
``error_detail`` (limited to ``MAX_DEPTH - 2`` levels by its validator, so a
32-level record limit holds for everything the projector keeps). Ignored
unknown fields are not walked (that would cost a second parse on the fast
path); a record beyond the parsers' own limits (pydantic's jiter: 200 levels,
orjson: 1024 to parse, 254 to serialise an item again) is rejected ``too_deep:``
rather than crashing anything. ``decode_value`` raises on no content at all: a
record that makes it raise is a bug here, not a reason to dead-letter.

Throughput: the whole-record path (one pass of pydantic's Rust parsing and
validation) is the fast one; the per-item fallback is much slower and runs
only for records that fail it. Measure on this machine with
``python -W ignore -m schemas.decode [events.jsonl]`` (docs/benchmarks.md#tools).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.errors import RejectCode
from schemas.union import EVENT_ADAPTER, EVENT_LIST_ADAPTER, EVENT_TYPES, Event

DEFAULT_MAX_BYTES: Final = 1_000_000

_LEADING_WS: Final = re.compile(rb"[ \t\r\n]*")


@dataclass(frozen=True, slots=True)
class Reject:
    """An item (or whole record) the projector cannot accept.

    Attributes:
        index: Position in the record's array, or None when the whole record
            is rejected (not JSON, too large, not an object, a bad single event).
        reason: ``"<code>: <detail>"``; the code is one of ``RejectCode``, the
            detail names the field path where there is one.
        raw: The rejected item re-serialised, or the whole record as received.
    """

    index: int | None
    reason: str
    raw: bytes

    @property
    def code(self) -> str:
        return self.reason.partition(":")[0]


@dataclass(frozen=True, slots=True)
class Decoded:
    """Result of decoding one record: its valid events in record order, and its rejects."""

    events: list[Event] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def decode_value(raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Decoded:
    """Decode one record value (an event object or an array of them).

    Args:
        raw: The record value as received.
        max_bytes: Records larger than this are rejected unparsed.

    Returns:
        The valid events and one ``Reject`` per bad item, or a single whole-record
        ``Reject`` (``index=None``) when the record as a whole is unusable.
    """
    if isinstance(raw, str):
        try:
            data = raw.encode()
        except UnicodeEncodeError as e:  # lone surrogates: not representable as UTF-8
            return _whole(RejectCode.INVALID_JSON, str(e), raw.encode("utf-8", "surrogatepass"))
    else:
        data = bytes(raw)

    if len(data) > max_bytes:
        return _whole(
            RejectCode.TOO_LARGE, f"record is {len(data)} bytes, limit is {max_bytes}", data
        )

    start = _LEADING_WS.match(data).end()  # type: ignore[union-attr]  # always matches
    first = data[start : start + 1]
    try:
        if first == b"[":
            events = EVENT_LIST_ADAPTER.validate_json(data)
            if events:
                return Decoded(events, [])
            return _whole(RejectCode.EMPTY_ARRAY, "the record is an array with no events", data)
        if first == b"{":
            return Decoded([EVENT_ADAPTER.validate_json(data)], [])
    except ValidationError:
        pass
    return _slow_path(data)


def _slow_path(data: bytes) -> Decoded:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        message = str(e)
        if "depth" in message or "recursion" in message:
            return _whole(RejectCode.TOO_DEEP, f"JSON nesting exceeds the parser limit ({e})", data)
        return _whole(RejectCode.INVALID_JSON, message, data)

    if isinstance(parsed, dict):
        reason = _validate_item(data)
        if reason is None:  # pragma: no cover  # the fast path would have taken it
            return Decoded([EVENT_ADAPTER.validate_json(data)], [])
        return Decoded([], [Reject(None, reason, data)])
    if not isinstance(parsed, list):
        return _whole(
            RejectCode.NOT_AN_OBJECT,
            f"the record is a JSON {_json_kind(parsed)}, expected an object or an array of objects",
            data,
        )
    if not parsed:
        return _whole(RejectCode.EMPTY_ARRAY, "the record is an array with no events", data)

    events: list[Event] = []
    rejects: list[Reject] = []
    for index, item in enumerate(parsed):
        try:
            item_raw = orjson.dumps(item)
        except orjson.JSONEncodeError as e:
            # orjson parses 1,024 levels but serialises far fewer: an item nested
            # between the two has no bytes of its own to dead-letter. Rejecting the
            # record whole keeps them all in one dead letter (per item, a record of
            # many such items would repeat itself once per item).
            return _whole(RejectCode.TOO_DEEP, f"item {index} cannot be re-serialised: {e}", data)
        if not isinstance(item, dict):
            rejects.append(
                Reject(
                    index,
                    f"{RejectCode.NOT_AN_OBJECT}: item {index} is a JSON {_json_kind(item)}",
                    item_raw,
                )
            )
            continue
        try:
            events.append(EVENT_ADAPTER.validate_json(item_raw))
        except ValidationError as e:
            rejects.append(Reject(index, _reason(e), item_raw))
    return Decoded(events, rejects)


def _validate_item(item_raw: bytes) -> str | None:
    try:
        EVENT_ADAPTER.validate_json(item_raw)
    except ValidationError as e:
        return _reason(e)
    return None


def _whole(code: RejectCode, detail: str, data: bytes) -> Decoded:
    return Decoded([], [Reject(None, f"{code}: {detail}", data)])


def _reason(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    reason = _format_error(errors[0])
    if len(errors) > 1:
        others = ", ".join(_path(e["loc"]) or "<record>" for e in errors[1:4])
        more = f", +{len(errors) - 4}" if len(errors) > 4 else ""
        reason += f" (also: {others}{more})"
    return reason


def _format_error(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    path = _path(error["loc"])
    if kind == "union_tag_not_found":
        return f"{RejectCode.MISSING_FIELD}: type"
    if kind == "union_tag_invalid":
        return f"{RejectCode.UNKNOWN_TYPE}: {ctx.get('tag')!r} is not one of the contract's types"
    if kind == "missing":
        return f"{RejectCode.MISSING_FIELD}: {path}"
    if kind == "too_deep":
        return f"{RejectCode.TOO_DEEP}: {path}: {error['msg']}"
    if kind == "json_invalid":
        if "recursion" in error["msg"]:
            return f"{RejectCode.TOO_DEEP}: {error['msg']}"
        return f"{RejectCode.INVALID_JSON}: {error['msg']}"
    if not path and kind in {"model_attributes_type", "model_type", "dict_type"}:
        return f"{RejectCode.NOT_AN_OBJECT}: {error['msg']}"
    return f"{RejectCode.INVALID_FIELD}: {path}: {error['msg']}"


def _path(loc: tuple[int | str, ...]) -> str:
    # Through the discriminated union the first element is the matched tag.
    if loc and loc[0] in EVENT_TYPES:
        loc = loc[1:]
    return ".".join(str(part) for part in loc)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _benchmark() -> None:  # pragma: no cover
    import sys
    import time
    from pathlib import Path

    path = Path(
        sys.argv[1] if len(sys.argv) > 1 else "/work/shared/contract/examples/basic/events.jsonl"
    )
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    repeat = -(-100_000 // len(lines))
    record = b"[" + b",".join(lines * repeat) + b"]"
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        decoded = decode_value(record, max_bytes=len(record))
        best = min(best, time.perf_counter() - t0)
    n = len(decoded.events)
    assert n == len(lines) * repeat and not decoded.rejects
    print(f"{n} events, {len(record) / 1e6:.1f} MB: {best:.3f} s, {n / best:,.0f} events/s")


if __name__ == "__main__":  # pragma: no cover
    _benchmark()
