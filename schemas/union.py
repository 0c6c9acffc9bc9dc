"""The one discriminated union over every event type, and its module-level adapters."""

from __future__ import annotations

from typing import Annotated, Final, get_args

from pydantic import Field, TypeAdapter

from schemas.batches import BatchCompleted, BatchCreated, BatchFailed, BatchStarted
from schemas.envelope import Envelope
from schemas.messages import MessageDlr, MessageSubmitted
from schemas.runs import (
    CampaignDefined,
    RunCancelled,
    RunClaimed,
    RunCompleted,
    RunFailed,
    RunScheduled,
    RunSnapshotFrozen,
)

# The discriminator makes pydantic dispatch on ``type`` in one lookup and
# report only the matching member's errors (no trial and error over members).
Event = Annotated[
    CampaignDefined
    | RunScheduled
    | RunClaimed
    | RunSnapshotFrozen
    | RunCompleted
    | RunFailed
    | RunCancelled
    | BatchCreated
    | BatchStarted
    | BatchCompleted
    | BatchFailed
    | MessageSubmitted
    | MessageDlr,
    Field(discriminator="type"),
]

EVENT_MODELS: Final[tuple[type[Envelope], ...]] = get_args(get_args(Event)[0])

MODEL_OF_TYPE: Final[dict[str, type[Envelope]]] = {
    model.model_fields["type"].default: model for model in EVENT_MODELS
}

EVENT_TYPES: Final[frozenset[str]] = frozenset(MODEL_OF_TYPE)

EVENT_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event)

EVENT_LIST_ADAPTER: Final[TypeAdapter[list[Event]]] = TypeAdapter(list[Event])
