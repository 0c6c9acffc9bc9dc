"""The envelope every event carries, and the field types the event families share.

Strictness is chosen per field rather than with ``strict=True`` on the model:
strict models would refuse nested dicts in Python mode, which the projector's
own tests and producers use to build events.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

CONTRACT_VERSION = 1
# Deepest nesting of a record (array > event > ... ) the decoder accepts. Real
# events need 4; the limit keeps hostile input from exhausting parsers.
MAX_DEPTH = 32

_ZERO = timedelta(0)


def _utc_timestamp(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    # Lax datetime parsing would read numbers as Unix times; the contract only
    # allows RFC 3339 strings (or datetime objects from Python callers).
    if not isinstance(value, str | datetime):
        raise PydanticCustomError(
            "datetime_type", "Input should be an RFC 3339 timestamp string with an offset"
        )
    parsed: datetime = handler(value)
    # One representation for every timestamp so comparisons (F3-F10 tie-breaks)
    # and storage never depend on the producer's offset. Zero offsets (``Z``,
    # nearly every event) skip astimezone, which is costly with pydantic's TzInfo.
    if parsed.utcoffset() == _ZERO:
        return parsed
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before year 1 in UTC
        raise PydanticCustomError(
            "datetime_range", "Input names an instant outside years 1-9999 in UTC"
        ) from None


UtcDatetime = Annotated[AwareDatetime, WrapValidator(_utc_timestamp)]
"""Timezone-aware timestamp, normalised to UTC; naive timestamps are rejected."""

NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]
"""Identifier: a JSON string, never a number coerced into one, never empty."""

# Counts are stored as BIGINT: a larger one would pass validation and then fail
# every flush of its micro-batch (a poison pill at the store); rejected here, it
# is dead-lettered like any other invalid field.
BIGINT_MAX = 2**63 - 1

Count = Annotated[StrictInt, Field(ge=0, le=BIGINT_MAX)]
"""Non-negative JSON integer up to BIGINT; booleans and floats are rejected."""

PositiveInt = Annotated[StrictInt, Field(ge=1, le=BIGINT_MAX)]
"""JSON integer from 1 up to BIGINT; booleans and floats are rejected."""


def envelope_json_schema(schema: dict[str, Any]) -> None:
    """Publish ``type`` as required: its Python default is a convenience for callers."""
    schema["properties"]["type"].pop("default", None)
    required = schema.setdefault("required", [])
    if "type" not in required:
        required.insert(0, "type")


class Envelope(BaseModel):
    """Fields every event carries; each event family adds its own ``type`` and fields."""

    model_config = ConfigDict(frozen=True, extra="ignore", json_schema_extra=envelope_json_schema)

    event_id: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    occurred_at: UtcDatetime
    workspace_id: NonEmptyStr
    campaign_id: NonEmptyStr
    schema_version: PositiveInt = CONTRACT_VERSION
