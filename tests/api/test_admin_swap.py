"""The admin swap while the projector is still starting: 503 with Retry-After,
nothing changed; ``request_swap`` (``projector swap``) waits it out."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyRing
from api.readstore import ReadStore
from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.rebuild.errors import SwapError
from projector.rebuild.swap import SwapController, request_swap

ADMIN = "admin-key-0123456789"
KEYS = KeyRing.from_dict(
    {"keys": [{"key": ADMIN, "workspace_id": "ws_ops", "scopes": ["admin"]}]}
)


@pytest.fixture
def starting(reader: ReadStore, pipeline: PipelineStatus) -> TestClient:
    """A serve whose projector has no event loop yet (faust still starting)."""
    controller = SwapController(SimpleNamespace(loop=None), on_swapped=lambda _new: None)
    app = create_app(
        reader, keys=KEYS, status=pipeline.snapshot, metrics=Metrics(), admin=controller
    )
    with TestClient(app, base_url="http://serve", raise_server_exceptions=False) as client:
        yield client


def test_a_server_still_starting_answers_503_with_retry_after(starting: TestClient) -> None:
    r = starting.post("/admin/swap", json={"db": "/nowhere.duckdb"}, headers={"X-API-Key": ADMIN})
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"
    assert r.json()["errors"][0]["code"] == "NOT_READY"
    assert "still starting" in r.json()["errors"][0]["message"]


def test_request_swap_gives_up_on_a_server_starting_past_its_wait(starting: TestClient) -> None:
    waits: list[str] = []
    with pytest.raises(SwapError, match=r"refused \(503 NOT_READY\): The projector is still"):
        request_swap("http://serve", "/nowhere.duckdb", ADMIN, wait=1, on_wait=waits.append,
                     client=starting)  # fmt: skip
    assert waits == []  # Retry-After 2 s is past the 1 s it may wait


def _serve(answers: list[httpx.Response]) -> tuple[httpx.Client, list[dict[str, Any]]]:
    """A client whose server gives ``answers`` in turn; the requests it saw."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append({"path": request.url.path, "body": request.content})
        return answers[len(seen) - 1]

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def _error(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"success": False, "data": None, "errors": [{"code": code, "message": "m"}]}
    return httpx.Response(status, json=body, headers=headers)


def test_request_swap_retries_a_starting_server_until_it_swaps() -> None:
    done = httpx.Response(200, json={"success": True, "data": {"db": "/new.duckdb"}})
    client, seen = _serve([_error(503, "NOT_READY", "0"), _error(503, "NOT_READY", "0"), done])
    waits: list[str] = []
    data = request_swap("http://serve", "/new.duckdb", ADMIN, on_wait=waits.append, client=client)
    assert data == {"db": "/new.duckdb"}
    assert len(seen) == 3 and {s["path"] for s in seen} == {"/admin/swap"}
    assert waits == ["(503 NOT_READY): m"] * 2


@pytest.mark.parametrize(
    "answer",
    [_error(409, "SWAP_REFUSED"), _error(503, "NOT_READY"), _error(503, "NOT_READY", "soon")],
    ids=["refused", "503-without-retry-after", "unreadable-retry-after"],
)
def test_request_swap_never_retries_a_refusal(answer: httpx.Response) -> None:
    client, seen = _serve([answer])
    with pytest.raises(SwapError, match=r"^refused \("):
        request_swap("http://serve", "/new.duckdb", ADMIN, client=client)
    assert len(seen) == 1
