"""``Settings.event_loop``: which loop faust runs on (the API's is uvicorn's ``loop``)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from projector.settings import Settings
from projector.worker import _install_loop


@pytest.fixture
def restore_policy():
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)
    asyncio.set_event_loop(None)


@pytest.mark.parametrize(("setting", "module"), [("auto", "uvloop"), ("uvloop", "uvloop"),
                                                 ("asyncio", "asyncio")])  # fmt: skip
def test_the_setting_chooses_faust_s_loop(setting, module, restore_policy):
    asyncio.set_event_loop_policy(None)  # the default policy
    _install_loop(setting)
    loop = asyncio.new_event_loop()
    try:
        assert type(loop).__module__.split(".")[0] == module
    finally:
        loop.close()


def test_an_unknown_loop_is_refused(monkeypatch):
    monkeypatch.setenv("PROJECTOR_EVENT_LOOP", "trio")
    with pytest.raises(ValidationError, match="event_loop"):
        Settings()
