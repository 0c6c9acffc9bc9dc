"""Fixtures of the reliability suite: a broker of the test's own, for faults that hit the broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from projector.broker import EmbeddedBroker
from projector.settings import Topics
from projector.topics import ensure_topics_sync


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A Tansu broker for this test alone: pausing or restarting it hurts nobody else."""
    with EmbeddedBroker() as b:
        yield b


def make_topics(bootstrap: str, partitions: int = 4, prefix: str | None = None) -> Topics:
    prefix = prefix or f"r{uuid.uuid4().hex[:12]}"
    topics = Topics(
        runs=f"{prefix}.campaign.runs",
        batches=f"{prefix}.campaign.batches",
        submits=f"{prefix}.campaign.submits",
        dlrs=f"{prefix}.campaign.dlrs",
        deadletter=f"{prefix}.campaign.deadletter",
    )
    ensure_topics_sync(bootstrap, topics.all, partitions)
    return topics
