"""Topic creation on the real broker: idempotent, and a partition count it cannot change is said."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from projector.intake.errors import PartitionCountError
from projector.intake.topics import ensure_topics, require_copartitioned
from projector.settings import Topics
from tests.fixtures.kafka import partition_counts
from tests.fixtures.topics import make_topics_with_counts

TopicsFactory = Callable[..., Topics]


async def test_ensure_topics_is_idempotent(
    bootstrap: str, topics_factory: TopicsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    topics = topics_factory(partitions=3)  # created once by the factory
    await ensure_topics(bootstrap, topics.all, 3)
    await ensure_topics(bootstrap, topics.all, 3)
    counts = await partition_counts(bootstrap, list(topics.all))
    assert counts == {t: 3 for t in topics.all}

    with caplog.at_level(logging.WARNING, logger="projector.intake.topics"):
        await ensure_topics(bootstrap, [topics.runs], 5)
    assert "exists with 3 partitions, not 5" in caplog.text
    assert (await partition_counts(bootstrap, [topics.runs]))[topics.runs] == 3


def _uneven(topics: Topics) -> dict[str, int]:
    """Partition counts as a topic altered on its own leaves them: runs has fewer."""
    return {topics.runs: 2, topics.batches: 4, topics.submits: 4, topics.dlrs: 4}


async def test_source_topics_with_one_count_pass(
    bootstrap: str, topics_factory: TopicsFactory
) -> None:
    topics = topics_factory(partitions=3)
    counts = await ensure_topics(bootstrap, topics.all, 3)
    assert counts == {t: 3 for t in topics.all}
    assert require_copartitioned(counts, topics.sources) == 3


async def test_source_topics_with_differing_counts_are_refused(bootstrap: str) -> None:
    topics = make_topics_with_counts(bootstrap, _uneven)
    # The broker's own view: ensure_topics leaves existing topics as they are.
    counts = await ensure_topics(bootstrap, topics.all, 4)
    assert counts == {**_uneven(topics), topics.deadletter: 4}
    with pytest.raises(PartitionCountError) as e:
        require_copartitioned(counts, topics.sources)
    said = str(e.value)
    assert f"{topics.runs} has 2" in said and f"{topics.dlrs} has 4" in said
    assert "kafka-topics --alter" in said and "--partitions 4" in said
    # The dead-letter topic is ours, not a source: its count does not matter.
    assert require_copartitioned({**counts, topics.runs: 4, topics.deadletter: 1}, topics.sources)


def test_a_missing_source_topic_is_refused() -> None:
    with pytest.raises(PartitionCountError, match="not found: b"):
        require_copartitioned({"a": 4}, ["a", "b"])
