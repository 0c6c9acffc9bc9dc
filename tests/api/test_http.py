"""Envelope, request ids, freshness headers, ETag polling, health and metrics."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.readstore import ReadStore
from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.store.writer import Store
from schemas import CampaignDefined, MessageDlr, MessageSubmitted, RunClaimed, RunScheduled
from tests.api.conftest import (
    ALPHA_ALL,
    ALPHA_ANALYTICS,
    ALPHA_CAMPAIGNS,
    BETA_ALL,
    BIG_CID,
    BIG_RUN,
    NO_RUN_CID,
    OFFSETS,
    EventFactory,
    all_events,
    get,
    seed,
)

REQUEST_ID = re.compile(r"req_[0-9A-HJKMNP-TV-Z]{26}")
STATUS = f"/v1/campaign/{BIG_CID}/status"


def test_envelope_and_generated_request_id(client):
    resp = get(client, STATUS)
    body = resp.json()
    assert set(body) == {"success", "data", "errors", "request_id"}
    assert REQUEST_ID.fullmatch(body["request_id"])
    assert resp.headers["X-Request-ID"] == body["request_id"]
    assert resp.headers["content-type"] == "application/json"
    assert get(client, STATUS).json()["request_id"] != body["request_id"]


def test_client_request_id_is_echoed_when_sane(client):
    resp = get(client, STATUS, **{"X-Request-ID": "trace-abc_123:9"})
    assert resp.headers["X-Request-ID"] == "trace-abc_123:9"
    assert resp.json()["request_id"] == "trace-abc_123:9"
    # Errors too.
    resp = get(client, STATUS, key=None, **{"X-Request-ID": "trace-err"})
    assert resp.json()["request_id"] == "trace-err"


@pytest.mark.parametrize("insane", ["a" * 200, "bad id with spaces", "-leading", "x\u00e9"])
def test_insane_request_id_is_replaced(client, insane):
    resp = client.get(STATUS, headers={"X-API-Key": ALPHA_ALL, "X-Request-ID": insane.encode()})
    assert REQUEST_ID.fullmatch(resp.headers["X-Request-ID"])


def test_freshness_headers(client, pipeline):
    resp = get(client, STATUS)
    watermark = ",".join(f"{t}:{p}={o}" for (t, p), o in sorted(OFFSETS.items()))
    assert resp.headers["X-Projection-Watermark"] == watermark
    assert "X-Projection-Lag" not in resp.headers  # log end unknown
    pipeline.update(log_end={tp: o + 5 for tp, o in OFFSETS.items()})
    resp = get(client, f"/v1/campaign/{BIG_CID}/runs/{BIG_RUN}")
    assert resp.headers["X-Projection-Lag"] == "15"
    pipeline.update(offsets={})
    resp = get(client, f"/v1/campaign/{BIG_CID}/analytics")
    assert resp.headers["X-Projection-Watermark"] == f"flush:{pipeline.flush_seq}"


@pytest.mark.parametrize(
    "path",
    [
        STATUS,
        f"/campaigns/{BIG_CID}/status",
        f"/v1/campaign/{BIG_CID}/analytics",
        f"/v1/campaign/{BIG_CID}/runs/{BIG_RUN}",
        f"/v1/campaign/{NO_RUN_CID}/status",
    ],
)
def test_if_none_match_gives_304_without_body(client, path):
    first = get(client, path)
    tag = first.headers["ETag"]
    assert tag.startswith('W/"')
    again = get(client, path, **{"If-None-Match": tag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == tag
    assert "X-Projection-Watermark" in again.headers and "X-Request-ID" in again.headers
    # Lists, strong form and '*' match too; other tags do not.
    assert get(client, path, **{"If-None-Match": f'W/"x", {tag}'}).status_code == 304
    assert get(client, path, **{"If-None-Match": tag[2:]}).status_code == 304
    assert get(client, path, **{"If-None-Match": "*"}).status_code == 304
    assert get(client, path, **{"If-None-Match": 'W/"0-0"'}).status_code == 200


def test_etag_differs_by_endpoint_and_query(client, reader):
    a = get(client, STATUS).headers["ETag"]
    b = get(client, f"/campaigns/{BIG_CID}/status").headers["ETag"]
    c = get(client, f"/v1/campaign/{BIG_CID}/analytics").headers["ETag"]
    assert len({a, b, c}) == 3
    assert a.startswith(f'W/"{reader.position(("ws_alpha", BIG_CID))}-')


def test_304_still_requires_auth(client):
    tag = get(client, STATUS).headers["ETag"]
    resp = get(client, STATUS, key=None, **{"If-None-Match": tag})
    assert resp.status_code == 401


def test_live_store_etag_changes_only_with_the_campaign(tmp_path):
    """Over the live in-process store: a flush of the campaign invalidates its ETag,
    a flush of another campaign does not; reads see each committed flush."""
    from api.keys import KeyRing
    from tests.api.conftest import KEYS_DOC

    with Store(tmp_path / "live.duckdb") as store:
        seed(store, all_events())
        status = PipelineStatus(ready=True, offsets=store.offsets(), flush_seq=store.seq)
        app = create_app(ReadStore(store.cursor), keys=KeyRing.from_dict(KEYS_DOC),
                         status=status.snapshot, metrics=Metrics())
        with TestClient(app) as client:
            first = get(client, STATUS)
            tag, sent = first.headers["ETag"], first.json()["data"]["sent"]
            ev = EventFactory()
            store.flush([ev(RunClaimed, campaign_id=NO_RUN_CID, run_id="other")], {})
            assert get(client, STATUS, **{"If-None-Match": tag}).status_code == 304
            store.flush([ev(MessageSubmitted, campaign_id=BIG_CID, run_id=BIG_RUN,
                            batch_id="b2", recipient_id="r0001", phone_number="2557",
                            outcome="sent", message_id="m0001")], {})
            resp = get(client, STATUS, **{"If-None-Match": tag})
            assert resp.status_code == 200
            assert resp.json()["data"]["sent"] == sent + 1
            assert resp.headers["ETag"] != tag
            store.flush([ev(MessageDlr, campaign_id=BIG_CID, run_id=BIG_RUN,
                            message_id="m0001", status="delivered")], {})
            assert get(client, STATUS).json()["data"]["delivered"] == 61


def _no_queries(reader: ReadStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("a warm poll queried DuckDB")

    monkeypatch.setattr(reader, "_one", refuse)
    monkeypatch.setattr(reader, "_all", refuse)


@pytest.mark.parametrize("path", [STATUS, f"/campaigns/{BIG_CID}/status",
                                  f"/v1/campaign/{BIG_CID}/analytics"])
def test_warm_poll_is_answered_from_memory(client, reader, path, monkeypatch):
    """A read-only file cannot change: once a campaign was read, its polls
    (200, 304 and the other workspace's 403) need no query, with the same answers."""
    first = get(client, path)
    _no_queries(reader, monkeypatch)
    again = get(client, path)
    assert again.status_code == 200
    assert again.json()["data"] == first.json()["data"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert get(client, path, **{"If-None-Match": first.headers["ETag"]}).status_code == 304
    other = get(client, path, key=BETA_ALL)
    assert other.status_code == 403 and other.json()["data"] is None
    assert get(client, path, key=ALPHA_ANALYTICS if "status" in path else ALPHA_CAMPAIGNS
               ).status_code == 403  # scope still checked first
    assert get(client, path, key=None).status_code == 401


def test_live_warm_poll_follows_the_writer(tmp_path, monkeypatch):
    """Over the live store the head comes from the writer's memory: a poll of an
    unchanged campaign needs no query, and a flush of it is seen at once."""
    from api.keys import KeyRing
    from tests.api.conftest import KEYS_DOC

    with Store(tmp_path / "live.duckdb") as store:
        seed(store, all_events())
        status = PipelineStatus(ready=True, offsets=store.offsets(), flush_seq=store.seq)
        reader = ReadStore(store.cursor, heads=store.heads)
        app = create_app(reader, keys=KeyRing.from_dict(KEYS_DOC), status=status.snapshot,
                         metrics=Metrics())
        with TestClient(app) as client:
            sent = get(client, STATUS).json()["data"]["sent"]
            with monkeypatch.context() as patched:
                _no_queries(reader, patched)
                assert get(client, STATUS).json()["data"]["sent"] == sent
            ev = EventFactory()
            store.flush([ev(MessageSubmitted, campaign_id=BIG_CID, run_id=BIG_RUN,
                            batch_id="b2", recipient_id="r0001", phone_number="2557",
                            outcome="sent", message_id="m0001")], {})
            assert get(client, STATUS).json()["data"]["sent"] == sent + 1


def test_live_poll_of_a_changed_campaign_reads_runs_from_the_writer(tmp_path, monkeypatch):
    """Beside the writer, status and analytics of a campaign that just changed are
    built from Store.runs_of: no query, no thread hop, same payload as DuckDB's."""
    from api.keys import KeyRing
    from tests.api.conftest import KEYS_DOC

    analytics = f"/v1/campaign/{BIG_CID}/analytics"
    with Store(tmp_path / "live.duckdb") as store:
        seed(store, all_events())
        status = PipelineStatus(ready=True, offsets=store.offsets(), flush_seq=store.seq)
        keys = KeyRing.from_dict(KEYS_DOC)
        from_db = create_app(ReadStore(store.cursor), keys=keys, status=status.snapshot,
                             metrics=Metrics())
        reader = ReadStore(store.cursor, heads=store.heads, polled=store.polled)
        live = create_app(reader, keys=keys, status=status.snapshot, metrics=Metrics())
        ev = EventFactory()
        with TestClient(live) as client, TestClient(from_db) as reference:
            for n in range(3):
                store.flush([ev(MessageSubmitted, campaign_id=BIG_CID, run_id=BIG_RUN,
                                batch_id="b2", recipient_id=f"r000{n}", phone_number="2557",
                                outcome="sent", message_id=f"m000{n}")], {})
                with monkeypatch.context() as patched:
                    _no_queries(reader, patched)
                    got = [get(client, path).json()["data"] for path in (STATUS, analytics)]
                want = [get(reference, path).json()["data"] for path in (STATUS, analytics)]
                assert got == want


def _after_commit(store: Store, then: Callable[[], None]) -> Callable[..., Any]:
    """``store._transaction`` calling ``then`` right after its COMMIT: DuckDB holds
    the flush, the writer has not yet noted it in memory."""
    transaction = store._transaction  # noqa: SLF001

    @contextmanager
    def wrapped(what: str, seq: int) -> Iterator[Any]:
        with transaction(what, seq) as con:
            yield con
        then()

    return wrapped


@pytest.mark.parametrize("kind", ["status", "analytics"])
def test_live_poll_between_commit_and_memory_answers_as_of_the_flush_before(
    tmp_path, monkeypatch, kind
):
    """Issue 31: a poll landing after a flush's COMMIT, before the writer notes the
    flush in memory, answers as of the flush before (here the campaign was unknown:
    404), never the new position from DuckDB with the old runs from memory. Once
    that pairing answered NO_RUN and cached it under the new position, so every
    later poll said NO_RUN until the campaign changed again."""
    from api.keys import KeyRing
    from tests.api.conftest import KEYS_DOC

    cid, path = "c-born-in-one-flush", f"/v1/campaign/c-born-in-one-flush/{kind}"
    ev = EventFactory()
    born = [
        ev(CampaignDefined, campaign_id=cid, name="New", channel="SMS", provider="mock"),
        ev(RunScheduled, campaign_id=cid, run_id="run-1", recipient_count=3, batch_size=3,
           scheduled_at=datetime(2026, 5, 12, 9, 0, tzinfo=UTC)),
    ]  # fmt: skip
    with Store(tmp_path / "live.duckdb") as store:
        status = PipelineStatus(ready=True)
        reader = ReadStore(store.cursor, heads=store.heads, polled=store.polled)
        app = create_app(reader, keys=KeyRing.from_dict(KEYS_DOC), status=status.snapshot,
                         metrics=Metrics())  # fmt: skip
        with TestClient(app) as client:
            in_window: list[Any] = []
            with monkeypatch.context() as patched:
                patched.setattr(store, "_transaction", _after_commit(
                    store, lambda: in_window.append(get(client, path))
                ))  # fmt: skip
                store.flush(born, {})
            after = get(client, path)
        assert after.status_code == 200
        assert after.json()["data"].get("campaign_run_id") == "run-1", after.json()["data"]
        if kind == "status":
            assert after.json()["data"]["status"] == "scheduled"
        assert [r.status_code for r in in_window] == [404]


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["data"] == {"status": "ok"}
    assert REQUEST_ID.fullmatch(resp.headers["X-Request-ID"])


def test_readyz_200_when_ready(client, pipeline):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    data = resp.json()["data"]
    assert data["ready"] is True and data["inconsistent"] == {}
    assert data["flush_seq"] == pipeline.flush_seq


def test_readyz_503_while_catching_up(client, pipeline):
    pipeline.update(ready=False, log_end={("campaign.runs", 0): 1040})
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["success"] is False and body["errors"][0]["code"] == "NOT_READY"
    assert body["data"]["ready"] is False
    assert body["data"]["lag"] == 1000
    assert "1000" in body["errors"][0]["message"]


def test_readyz_503_with_inconsistent_partition(client, pipeline):
    pipeline.update(inconsistent={("campaign.dlrs", 2): "log starts at 500, stored 120"})
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["data"]["inconsistent"] == {
        "campaign.dlrs:2": "log starts at 500, stored 120"
    }


def test_metrics_in_prometheus_text_with_route_templates(make_client):
    metrics = Metrics()
    client = make_client(metrics=metrics)
    get(client, STATUS)
    get(client, f"/v1/campaign/{BIG_CID}/runs/{BIG_RUN}")
    get(client, "/v1/nothing")
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert "# TYPE projector_http_request_seconds histogram" in text
    assert 'route="/v1/campaign/{campaign_id}/status",status="200"' in text
    assert 'route="/v1/campaign/{campaign_id}/runs/{run_id}"' in text
    assert 'route="unmatched",status="404"' in text
    assert BIG_CID not in text  # raw paths never become labels
    assert "projector_events_applied" in text
