"""Batch lifecycle events (topic ``campaign.batches``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictStr
from pydantic_core import PydanticCustomError

from schemas.envelope import MAX_DEPTH, Envelope, NonEmptyStr, PositiveInt

# error_detail sits two levels down in a record (array > event > detail).
MAX_DETAIL_DEPTH = MAX_DEPTH - 2


def depth(value: Any) -> int:
    # Iterative so a deep value cannot exhaust the Python stack.
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in node)
    return deepest


def _shallow(value: dict[str, Any]) -> dict[str, Any]:
    if depth(value) > MAX_DETAIL_DEPTH:
        raise PydanticCustomError(
            "too_deep", "nested deeper than {limit} levels", {"limit": MAX_DETAIL_DEPTH}
        )
    return value


class BatchRecipient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    recipient_id: NonEmptyStr
    phone_number: StrictStr


class BatchCreated(Envelope):
    """A batch and the recipients it will send to (F11 names recipients from it)."""

    type: Literal["batch.created"] = "batch.created"
    run_id: NonEmptyStr
    batch_id: NonEmptyStr
    batch_sequence: PositiveInt
    recipients: list[BatchRecipient]


class BatchStarted(Envelope):
    type: Literal["batch.started"] = "batch.started"
    run_id: NonEmptyStr
    batch_id: NonEmptyStr


class BatchCompleted(Envelope):
    type: Literal["batch.completed"] = "batch.completed"
    run_id: NonEmptyStr
    batch_id: NonEmptyStr


class BatchFailed(Envelope):
    type: Literal["batch.failed"] = "batch.failed"
    run_id: NonEmptyStr
    batch_id: NonEmptyStr
    error_detail: Annotated[dict[str, Any], AfterValidator(_shallow)]
