"""The long-running processes' garbage-collector policy (projector.gcpolicy)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from projector import gcpolicy


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_freezes_what_exists_and_spaces_full_collections(restore_gc: None) -> None:
    before: list[object] = []  # alive at settle(): frozen, never scanned again
    assert any(o is before for o in gc.get_objects())
    young, middle, _ = gc.get_threshold()
    gcpolicy.settle()
    assert gc.get_freeze_count() > 0
    assert not any(o is before for o in gc.get_objects())  # frozen objects are not listed
    assert gc.get_threshold() == (young, middle, gcpolicy.FULL_COLLECTION_EVERY)
    after: list[object] = []  # created later: collected as usual
    assert any(o is after for o in gc.get_objects())


def test_worker_and_serve_settle_before_the_stream() -> None:
    """Both entry points call it (a source check: starting them needs a broker)."""
    import inspect

    from projector import serve, worker

    for module in (worker, serve):
        assert "gcpolicy.settle()" in inspect.getsource(module.run_cli)
