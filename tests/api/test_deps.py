"""The campaign-read dependencies (``api.deps``): what they check, in which order, and
that a poll beside the writer never leaves the event loop."""

from __future__ import annotations

from collections.abc import Iterator

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyRing
from api.readstore import ReadStore
from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.store.writer import Store
from tests.api.conftest import (
    ALPHA_ALL,
    ALPHA_ANALYTICS,
    BETA_ALL,
    BIG_CID,
    BIG_RUN,
    KEYS_DOC,
    all_events,
    get,
    seed,
)

LONG = "x" * 201
# (path, query) pairs that break one of the route's own parameters.
MALFORMED = [
    (f"/v1/campaign/{{cid}}/runs/{BIG_RUN}/recipients", "limit=201"),
    (f"/v1/campaign/{{cid}}/runs/{BIG_RUN}/recipients", "status=retrying"),
    (f"/v1/campaign/{{cid}}/runs/{BIG_RUN}/snapshot", "include_recipients=maybe"),
    (f"/v1/campaign/{{cid}}/runs/{LONG}", ""),
    ("/v1/campaign/{cid}/runs", "limit=51"),
    ("/v1/campaign/{cid}/batches", "skip=-1"),
]


@pytest.mark.parametrize(("template", "query"), MALFORMED)
@pytest.mark.parametrize(
    ("cid", "key"),
    [
        (BIG_CID, ALPHA_ANALYTICS),  # lacks campaigns:read
        ("no-such-campaign", ALPHA_ALL),  # 404 once well-formed
        (BIG_CID, BETA_ALL),  # another workspace's: 403 once well-formed
    ],
)
def test_a_malformed_request_is_422_before_scope_and_campaign(client, template, query, cid,
                                                              key):
    resp = get(client, f"{template.format(cid=cid)}?{query}", key=key)
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"][0]["code"] == "VALIDATION_ERROR"


def test_several_bad_parameters_are_named_path_first(client):
    resp = get(client, f"/v1/campaign/{LONG}/runs/{LONG}/recipients?limit=0")
    message = resp.json()["errors"][0]["message"]
    assert resp.status_code == 422
    assert message.index("path.campaign_id") < message.index("path.run_id")
    assert message.index("path.run_id") < message.index("query.limit")


def test_a_malformed_request_without_a_key_is_401(client):
    resp = get(client, f"/v1/campaign/{BIG_CID}/runs?limit=51", key=None)
    assert resp.status_code == 401


def test_extra_scope_comes_before_the_campaign(client):
    """pii:read for a CSV export is a scope like the others: checked before existence."""
    for cid in (BIG_CID, "no-such-campaign"):
        resp = client.get(f"/v1/campaign/{cid}/runs/{BIG_RUN}/recipients",
                          headers={"X-API-Key": "beta-no-pii-0123456789",
                                   "Accept": "text/csv"})
        assert resp.status_code == 403
        assert resp.json()["errors"][0]["code"] == "INSUFFICIENT_SCOPE"
        assert "pii:read" in resp.json()["errors"][0]["message"]


@pytest.fixture
def live_client(tmp_path) -> Iterator[TestClient]:
    with Store(tmp_path / "live.duckdb") as store:
        seed(store, all_events())
        status = PipelineStatus(ready=True, offsets=store.offsets(), flush_seq=store.seq)
        reader = ReadStore(store.cursor, heads=store.heads, polled=store.polled)
        app = create_app(reader, keys=KeyRing.from_dict(KEYS_DOC), status=status.snapshot,
                         metrics=Metrics())
        with TestClient(app) as client:
            yield client


@pytest.mark.parametrize("path", [f"/v1/campaign/{BIG_CID}/status",
                                  f"/campaigns/{BIG_CID}/status",
                                  f"/v1/campaign/{BIG_CID}/analytics"])
def test_a_poll_beside_the_writer_takes_no_thread_hop(live_client, path, monkeypatch):
    """Every answer of a poll (200, 304, 403, 404) on the event loop: a thread hop
    waits for the GIL under ingestion (docs/decisions/0007)."""
    tag = get(live_client, path).headers["ETag"]

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a poll went to the thread pool")

    monkeypatch.setattr(anyio.to_thread, "run_sync", refuse)
    assert get(live_client, path).status_code == 200
    assert get(live_client, path, **{"If-None-Match": tag}).status_code == 304
    assert get(live_client, path, key=BETA_ALL).status_code == 403
    assert get(live_client, path.replace(BIG_CID, "no-such-campaign")).status_code == 404
