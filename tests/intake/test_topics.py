"""Topic creation on the real broker: idempotent, and a partition count it cannot change is said."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from projector.intake.topics import ensure_topics
from projector.settings import Topics
from tests.fixtures.kafka import partition_counts

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
