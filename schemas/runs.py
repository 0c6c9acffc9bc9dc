"""Campaign and run lifecycle events (topic ``campaign.runs``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictStr, model_validator

from schemas.envelope import (
    Count,
    Envelope,
    NonEmptyStr,
    PositiveInt,
    UtcDatetime,
    envelope_json_schema,
)


def _channel_name_optional(schema: dict[str, Any]) -> None:
    # The model fills channel_name before validation, so in the core schema it
    # is required; producers may leave it out, which is what the export says.
    envelope_json_schema(schema)
    required = schema.get("required", [])
    if "channel_name" in required:
        required.remove("channel_name")
    schema["properties"]["channel_name"]["description"] = (
        "Display name of the channel; defaults to `channel`."
    )


class CampaignDefined(Envelope):
    """A campaign's definition; the one with the latest ``occurred_at`` wins."""

    model_config = ConfigDict(json_schema_extra=_channel_name_optional)

    type: Literal["campaign.defined"] = "campaign.defined"
    name: StrictStr
    channel: StrictStr
    channel_name: StrictStr
    provider: StrictStr
    campaign_type: StrictStr = "broadcast"

    @model_validator(mode="before")
    @classmethod
    def _default_channel_name(cls, data: Any) -> Any:
        # Before, not after: the model is frozen, and the field stays a plain
        # str for readers instead of ``str | None``.
        if isinstance(data, dict) and data.get("channel_name") is None and "channel" in data:
            return {**data, "channel_name": data["channel"]}
        return data


class RunScheduled(Envelope):
    """A run was scheduled; declares its size and batching."""

    type: Literal["run.scheduled"] = "run.scheduled"
    run_id: NonEmptyStr
    scheduled_at: UtcDatetime
    recipient_count: Count
    batch_size: PositiveInt = 1000
    total_batches: Count | None = Field(
        default=None, description="Defaults to ceil(recipient_count / batch_size)."
    )
    max_attempts: PositiveInt = 1

    @property
    def declared_total_batches(self) -> int:
        """``total_batches`` as sent, else derived as the contract says."""
        if self.total_batches is not None:
            return self.total_batches
        return -(-self.recipient_count // self.batch_size)


class RunClaimed(Envelope):
    """A worker picked the run up (shown as ``running``); starts the run."""

    type: Literal["run.claimed"] = "run.claimed"
    run_id: NonEmptyStr


class SnapshotCost(BaseModel):
    """Cost of a run in service units (e.g. ``sms_parts``), never money."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    total_cost: StrictFloat
    currency_units: StrictStr


class RunSnapshotFrozen(Envelope):
    """The run's content and audience as frozen at send time (``recipients`` is PII)."""

    type: Literal["run.snapshot_frozen"] = "run.snapshot_frozen"
    run_id: NonEmptyStr
    frozen_at: UtcDatetime
    channel: StrictStr
    provider: StrictStr
    sender_id: StrictStr
    template: StrictStr | None
    personalized: bool = Field(strict=True)
    body: StrictStr
    cost: SnapshotCost
    recipient_count: Count
    recipients: list[StrictStr] | None = None


class RunCompleted(Envelope):
    type: Literal["run.completed"] = "run.completed"
    run_id: NonEmptyStr


class ErrorInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    code: StrictStr
    message: StrictStr


class RunFailed(Envelope):
    type: Literal["run.failed"] = "run.failed"
    run_id: NonEmptyStr
    error: ErrorInfo


class RunCancelled(Envelope):
    type: Literal["run.cancelled"] = "run.cancelled"
    run_id: NonEmptyStr
