"""Per-message events: submits (``campaign.submits``) and carrier reports (``campaign.dlrs``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StrictStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from schemas.envelope import Envelope, NonEmptyStr, PositiveInt

SubmitOutcome = Literal["sent", "failed", "skipped"]
DlrStatus = Literal[
    "accepted", "buffered", "delivered", "undelivered", "expired", "rejected", "failed"
]
TERMINAL_DLR_STATUSES: frozenset[str] = frozenset(
    {"delivered", "undelivered", "expired", "rejected", "failed"}
)


class MessageSubmitted(Envelope):
    """One submit attempt for one recipient; the submit time is ``occurred_at``."""

    type: Literal["message.submitted"] = "message.submitted"
    run_id: NonEmptyStr
    batch_id: NonEmptyStr
    recipient_id: NonEmptyStr
    phone_number: StrictStr
    # outcome is declared before message_id: the message_id check reads it.
    outcome: SubmitOutcome
    message_id: StrictStr | None = Field(
        default=None,
        validate_default=True,
        description="Required (non-empty) when outcome is sent.",
    )
    attempt: PositiveInt = 1
    reason: StrictStr | None = None

    @field_validator("message_id")
    @classmethod
    def _message_id_when_sent(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A field validator rather than a model validator so the error's
        # location names message_id, which the dead-letter reason reports.
        if info.data.get("outcome") == "sent":
            if value is None:
                raise PydanticCustomError("missing", "Field required when outcome is 'sent'")
            if not value:
                raise PydanticCustomError(
                    "string_too_short", "Should not be empty when outcome is 'sent'"
                )
        return value


def _error_code_as_str(value: Any) -> Any:
    # Gateways send carrier error codes as numbers or strings; keep one type.
    if type(value) is int:
        return str(value)
    return value


class MessageDlr(Envelope):
    """A carrier delivery report for one message; the report time is ``occurred_at``."""

    type: Literal["message.dlr"] = "message.dlr"
    run_id: NonEmptyStr
    message_id: NonEmptyStr
    status: DlrStatus
    error_code: Annotated[
        StrictStr | None,
        BeforeValidator(_error_code_as_str),
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}),
    ] = None
