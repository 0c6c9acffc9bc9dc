"""How the long-running processes set up CPython (projector.intake.runtime)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from projector.intake import runtime


@pytest.fixture
def restore_runtime() -> Iterator[None]:
    threshold = gc.get_threshold()
    interval = sys.getswitchinterval()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


def test_settle_freezes_spaces_full_collections_and_shortens_switches(
    restore_runtime: None,
) -> None:
    before: list[object] = []  # alive at settle(): frozen, never scanned again
    assert any(o is before for o in gc.get_objects())
    young, middle, _ = gc.get_threshold()
    runtime.settle(0.25)
    assert gc.get_freeze_count() > 0
    assert not any(o is before for o in gc.get_objects())  # frozen objects are not listed
    assert gc.get_threshold() == (young, middle, runtime.FULL_COLLECTION_EVERY)
    assert sys.getswitchinterval() == pytest.approx(0.00025)
    after: list[object] = []  # created later: collected as usual
    assert any(o is after for o in gc.get_objects())


def test_the_switch_interval_setting_is_unset_unless_given(monkeypatch) -> None:
    from projector.settings import Settings

    monkeypatch.delenv("PROJECTOR_GIL_SWITCH_INTERVAL_MS", raising=False)
    assert Settings().gil_switch_interval_ms is None
    monkeypatch.setenv("PROJECTOR_GIL_SWITCH_INTERVAL_MS", "0.5")
    assert Settings().gil_switch_interval_ms == 0.5


def test_settle_keeps_the_switch_interval_unless_given(restore_runtime: None) -> None:
    sys.setswitchinterval(0.003)
    runtime.settle()
    assert sys.getswitchinterval() == pytest.approx(0.003)


def test_a_worker_settles_at_its_own_interval_unless_given(restore_runtime: None) -> None:
    runtime.settle_worker(None)
    assert sys.getswitchinterval() == pytest.approx(runtime.WORKER_SWITCH_INTERVAL_MS / 1000)
    runtime.settle_worker(0.5)
    assert sys.getswitchinterval() == pytest.approx(0.0005)
