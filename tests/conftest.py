"""Shared fixtures: one embedded broker per session, isolated topics per test.

Keep this module lean. Fixtures of other areas live in ``tests/fixtures/<area>.py``
and are registered by appending the module path to ``pytest_plugins`` below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from projector.settings import Topics
from projector.tools.broker import EmbeddedBroker
from tests.fixtures.topics import make_topics

# Append fixture modules here, e.g. "tests.fixtures.store".
pytest_plugins: list[str] = ["tests.fixtures.processes", "tests.fixtures.tree"]


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A Tansu broker on a free loopback port for the whole session (memory storage)."""
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
def bootstrap(broker: EmbeddedBroker) -> str:
    """``HOST:PORT`` of the session broker."""
    return broker.bootstrap


@pytest.fixture
def topics_factory(broker: EmbeddedBroker) -> Callable[..., Topics]:
    """Factory: ``make(partitions=4) -> Topics``, fresh uniquely prefixed topics, created.

    Every call gives new names, so tests sharing the session broker never see
    each other's records.
    """

    def make(partitions: int = 4) -> Topics:
        return make_topics(broker.bootstrap, partitions)

    return make
