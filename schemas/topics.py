"""Which topic each event type travels on (contract v1 topic table).

Topic *kinds* rather than names: the names are configurable per deployment
(``projector.settings.Topics``), the kinds are fixed by the contract.
"""

from __future__ import annotations

from typing import Final, Literal

from schemas.union import EVENT_TYPES, Event

TopicKind = Literal["runs", "batches", "submits", "dlrs"]

TOPIC_KINDS: Final[tuple[TopicKind, ...]] = ("runs", "batches", "submits", "dlrs")

TYPES_OF_TOPIC_KIND: Final[dict[str, frozenset[str]]] = {
    "runs": frozenset(
        {
            "campaign.defined",
            "run.scheduled",
            "run.claimed",
            "run.snapshot_frozen",
            "run.completed",
            "run.failed",
            "run.cancelled",
        }
    ),
    "batches": frozenset({"batch.created", "batch.started", "batch.completed", "batch.failed"}),
    "submits": frozenset({"message.submitted"}),
    "dlrs": frozenset({"message.dlr"}),
}

TOPIC_KIND_OF_TYPE: Final[dict[str, str]] = {
    type_: kind for kind, types in TYPES_OF_TOPIC_KIND.items() for type_ in sorted(types)
}

DEFAULT_TOPIC_OF_KIND: Final[dict[str, str]] = {
    "runs": "campaign.runs",
    "batches": "campaign.batches",
    "submits": "campaign.submits",
    "dlrs": "campaign.dlrs",
}
DEFAULT_DEADLETTER_TOPIC: Final = "campaign.deadletter"

# Import-time guard: a new event type must be given a topic.
if set(TOPIC_KIND_OF_TYPE) != EVENT_TYPES:  # pragma: no cover
    raise RuntimeError(
        f"topic table out of sync with events: {set(TOPIC_KIND_OF_TYPE) ^ EVENT_TYPES}"
    )


def topic_kind(event: Event) -> str:
    """The topic kind an event belongs on."""
    return TOPIC_KIND_OF_TYPE[event.type]


def record_key(event: Event) -> bytes:
    """The Kafka record key of an event: its ``campaign_id``, UTF-8."""
    return event.campaign_id.encode()
