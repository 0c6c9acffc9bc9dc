"""Fixtures of the reliability suite: a broker of the test's own, for faults that hit the broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from projector.tools.broker import EmbeddedBroker


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A Tansu broker for this test alone: pausing or restarting it hurts nobody else."""
    with EmbeddedBroker() as b:
        yield b
