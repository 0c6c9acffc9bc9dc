"""Event contract v1: pydantic models, the discriminated union, decoding and topic routing.

Imports nothing from ``projector`` or ``api``: producers and tests can use it alone.
"""

from schemas.batches import BatchCompleted, BatchCreated, BatchFailed, BatchRecipient, BatchStarted
from schemas.decode import Decoded, Reject, decode_value
from schemas.envelope import CONTRACT_VERSION, Envelope
from schemas.errors import ExportError, RejectCode, SchemasError
from schemas.messages import TERMINAL_DLR_STATUSES, MessageDlr, MessageSubmitted
from schemas.runs import (
    CampaignDefined,
    ErrorInfo,
    RunCancelled,
    RunClaimed,
    RunCompleted,
    RunFailed,
    RunScheduled,
    RunSnapshotFrozen,
    SnapshotCost,
)
from schemas.topics import TOPIC_KIND_OF_TYPE, TOPIC_KINDS, topic_kind
from schemas.union import EVENT_ADAPTER, EVENT_MODELS, EVENT_TYPES, MODEL_OF_TYPE, Event

__all__ = [
    "CONTRACT_VERSION",
    "EVENT_ADAPTER",
    "EVENT_MODELS",
    "EVENT_TYPES",
    "MODEL_OF_TYPE",
    "TERMINAL_DLR_STATUSES",
    "TOPIC_KINDS",
    "TOPIC_KIND_OF_TYPE",
    "BatchCompleted",
    "BatchCreated",
    "BatchFailed",
    "BatchRecipient",
    "BatchStarted",
    "CampaignDefined",
    "Decoded",
    "Envelope",
    "ErrorInfo",
    "Event",
    "ExportError",
    "MessageDlr",
    "MessageSubmitted",
    "Reject",
    "RejectCode",
    "RunCancelled",
    "RunClaimed",
    "RunCompleted",
    "RunFailed",
    "RunScheduled",
    "RunSnapshotFrozen",
    "SchemasError",
    "SnapshotCost",
    "decode_value",
    "topic_kind",
]
