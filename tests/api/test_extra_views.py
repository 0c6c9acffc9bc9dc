"""Breakdowns, pages, lists and execution state over HTTP, checked against an
independent reference (``extra_reference.Ref``: plain Python over the event
dicts) on generated scenarios plus hand-built edge cases."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.limits import Limits
from api.readstore import ReadStore
from api.routes import breakdowns
from projector.intake.metrics import Metrics
from projector.store.writer import Store
from projector.tools.simulate import generate
from schemas import EVENT_ADAPTER
from tests.api.conftest import (
    ALPHA_ALL,
    ALPHA_ANALYTICS,
    ALPHA_CAMPAIGNS,
    BETA_ALL,
    BETA_NO_PII,
    GAMMA_ALL,
)
from tests.api.extra_reference import Ref, fmt

KEY_OF = {"ws_alpha": ALPHA_ALL, "ws_beta": BETA_ALL, "ws_gamma": GAMMA_ALL}
NOW = datetime(2026, 7, 1, tzinfo=UTC)  # the server clock in these tests

RETRY_CID = "e0000000-0000-4000-8000-0000000000a1"
FUTURE_CID = "e0000000-0000-4000-8000-0000000000a2"
OVERDUE_CID = "e0000000-0000-4000-8000-0000000000a3"
ORPHAN_CID = "e0000000-0000-4000-8000-0000000000a4"
NO_RUN_CID = "e0000000-0000-4000-8000-0000000000a5"
UNDEFINED_CID = "e0000000-0000-4000-8000-0000000000a6"
BETA_CID = "e0000000-0000-4000-8000-0000000000b1"
RETRY_RUN = "run_retry"


class Events:
    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.t = datetime(2026, 5, 10, 8, 0, tzinfo=UTC)
        self.out: list[dict[str, Any]] = []

    def __call__(self, type_: str, cid: str, ws: str = "ws_alpha", at: datetime | None = None,
                 **fields: Any) -> None:
        self.t += timedelta(milliseconds=500)
        self.out.append({"event_id": f"edge-{next(self.ids):05d}", "type": type_,
                         "occurred_at": fmt(at or self.t), "workspace_id": ws,
                         "campaign_id": cid, **fields})


def edge_events() -> list[dict[str, Any]]:
    ev = Events()
    day = datetime(2026, 5, 10, tzinfo=UTC)
    # Retries in progress: max 3 attempts, run still running; 8 declared, 6 known.
    ev("campaign.defined", RETRY_CID, name="Retries", channel="SMS", provider="mock")
    ev("run.scheduled", RETRY_CID, run_id=RETRY_RUN, scheduled_at=fmt(day), recipient_count=8,
       batch_size=4, max_attempts=3)
    ev("run.claimed", RETRY_CID, run_id=RETRY_RUN)
    ev("batch.created", RETRY_CID, run_id=RETRY_RUN, batch_id="rb1", batch_sequence=1,
       recipients=[{"recipient_id": f"x{i}", "phone_number": f"25571000000{i}"}
                   for i in (4, 3, 2, 1)])
    ev("batch.created", RETRY_CID, run_id=RETRY_RUN, batch_id="rb2", batch_sequence=2,
       recipients=[{"recipient_id": "a0", "phone_number": "255710000009"}])
    ev("batch.started", RETRY_CID, run_id=RETRY_RUN, batch_id="rb1")
    sub = dict(run_id=RETRY_RUN, batch_id="rb1")
    # x1: failed, then sent; an early 'accepted' report, then delivered.
    ev("message.submitted", RETRY_CID, **sub, recipient_id="x1", phone_number="255710000001",
       outcome="failed", attempt=1, reason="timeout")
    ev("message.dlr", RETRY_CID, run_id=RETRY_RUN, message_id="mx1", status="delivered")
    ev("message.submitted", RETRY_CID, **sub, recipient_id="x1", phone_number="255710000001",
       outcome="sent", attempt=2, message_id="mx1")
    ev("message.dlr", RETRY_CID, run_id=RETRY_RUN, message_id="mx1", status="accepted")
    # x2: failed once, attempts left: retrying.
    ev("message.submitted", RETRY_CID, **sub, recipient_id="x2", phone_number="255710000002",
       outcome="failed", attempt=1, reason="throttled")
    # x3: failed on every allowed attempt (arriving out of order): exhausted.
    for a in (3, 1, 2):
        ev("message.submitted", RETRY_CID, **sub, recipient_id="x3", phone_number="255710000003",
           outcome="failed", attempt=a, reason="provider_error")
    # x4: skipped. z9: known only from a submit in a batch with no batch event.
    ev("message.submitted", RETRY_CID, **sub, recipient_id="x4", phone_number="255710000004",
       outcome="skipped", attempt=1, reason="opted_out")
    ev("message.submitted", RETRY_CID, run_id=RETRY_RUN, batch_id="rb9", recipient_id="z9",
       phone_number="255710000099", outcome="sent", attempt=1, message_id="mz9")
    ev("message.dlr", RETRY_CID, run_id=RETRY_RUN, message_id="mz9", status="expired",
       error_code="E17")

    # A completed run with a failed delivery, then a run scheduled in the future.
    ev("campaign.defined", FUTURE_CID, name="Future", channel="SMS", channel_name="Text",
       provider="carrier-x", campaign_type="broadcast")
    ev("run.scheduled", FUTURE_CID, run_id="run_done", scheduled_at=fmt(day),
       recipient_count=1, max_attempts=1)
    ev("run.claimed", FUTURE_CID, run_id="run_done")
    ev("batch.created", FUTURE_CID, run_id="run_done", batch_id="fb1", batch_sequence=1,
       recipients=[{"recipient_id": "f1", "phone_number": "255720000001"}])
    ev("message.submitted", FUTURE_CID, run_id="run_done", batch_id="fb1", recipient_id="f1",
       phone_number="255720000001", outcome="sent", message_id="mf1")
    ev("message.dlr", FUTURE_CID, run_id="run_done", message_id="mf1", status="undelivered")
    ev("batch.completed", FUTURE_CID, run_id="run_done", batch_id="fb1")
    # Two terminal events: the earliest wins.
    ev("run.completed", FUTURE_CID, run_id="run_done")
    ev("run.failed", FUTURE_CID, run_id="run_done",
       error={"code": "ENGINE", "message": "late"})
    ev("run.scheduled", FUTURE_CID, run_id="run_next", scheduled_at="2099-01-01T00:00:00.000Z",
       recipient_count=10)

    # Scheduled in the past, never claimed; a cancelled earlier run.
    ev("campaign.defined", OVERDUE_CID, name="Overdue", channel="SMS", provider="mock")
    ev("run.scheduled", OVERDUE_CID, run_id="run_cancel", scheduled_at=fmt(day),
       recipient_count=3)
    ev("run.cancelled", OVERDUE_CID, run_id="run_cancel")
    ev("run.scheduled", OVERDUE_CID, run_id="run_clean", scheduled_at=fmt(day - timedelta(days=1)),
       recipient_count=0)
    ev("run.claimed", OVERDUE_CID, run_id="run_clean")
    ev("run.completed", OVERDUE_CID, run_id="run_clean")
    ev("run.scheduled", OVERDUE_CID, run_id="run_late",
       scheduled_at=fmt(day + timedelta(days=1)), recipient_count=3)

    # A run known only from batch events (no run.scheduled yet).
    ev("campaign.defined", ORPHAN_CID, name="Orphan", channel="SMS", provider="mock")
    ev("batch.created", ORPHAN_CID, run_id="run_orphan", batch_id="ob1", batch_sequence=1,
       recipients=[{"recipient_id": "o1", "phone_number": "255730000001"}])

    ev("campaign.defined", NO_RUN_CID, name="Nothing yet", channel="SMS", provider="mock")
    # A campaign known only from its run (no campaign.defined).
    ev("run.scheduled", UNDEFINED_CID, run_id="run_undefined", scheduled_at=fmt(day),
       recipient_count=2)
    ev("campaign.defined", BETA_CID, "ws_beta", name="Beta", channel="SMS", provider="mock")
    ev("run.scheduled", BETA_CID, "ws_beta", run_id="run_beta", scheduled_at=fmt(day),
       recipient_count=1)
    ev("batch.created", BETA_CID, "ws_beta", run_id="run_beta", batch_id="bb1",
       batch_sequence=1, recipients=[{"recipient_id": "b1", "phone_number": "255740000001"}])
    return ev.out


def all_extra_events() -> list[dict[str, Any]]:
    return list(generate(6, 150, seed=11)) + edge_events()


def seed_dicts(store: Store, events: list[dict[str, Any]], step: int = 500) -> None:
    models = [EVENT_ADAPTER.validate_python(e) for e in events]
    for n in range(0, len(models), step):
        store.flush(models[n:n + step], {("campaign.runs", 0): n + step})


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return all_extra_events()


@pytest.fixture(scope="module")
def ref(events) -> Ref:
    return Ref(events)


@pytest.fixture(scope="module")
def extra_reader(tmp_path_factory, events) -> Iterator[ReadStore]:
    path: Path = tmp_path_factory.mktemp("extra") / "projector.duckdb"
    with Store(path) as store:
        seed_dicts(store, events)
    r = ReadStore.open_file(path)
    yield r
    r.close()


@pytest.fixture
def xc(keys, pipeline, extra_reader, monkeypatch) -> Iterator[TestClient]:
    """A client of the scenario database; rate limits off (these tests send hundreds of
    requests, some deliberately unauthenticated, from one address)."""
    monkeypatch.setattr(breakdowns, "now_utc", lambda: NOW)
    app = create_app(extra_reader, keys=keys, status=pipeline.snapshot, metrics=Metrics(),
                     limits=Limits(rate=0, anon_rate=0))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def call(client: TestClient, path: str, key: str | None, **params: Any):
    headers = {} if key is None else {"X-API-Key": key}
    return client.get(path, headers=headers, params=params)


def data(resp) -> Any:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is True and body["errors"] is None
    return body["data"]


def page(resp) -> tuple[list[Any], dict[str, int]]:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"success", "data", "meta", "errors", "request_id"}
    return body["data"], body["meta"]


def all_campaigns(ref: Ref) -> list[tuple[str, str]]:
    return [(c, ref.workspace[c]) for c in sorted(ref.workspace)]


def test_scenarios_cover_the_edges(ref):
    """The generated part has several runs, retries, failures and more than one workspace."""
    assert len({ws for _c, ws in all_campaigns(ref)}) >= 2
    assert sum(len(ref.runs_of(c)) for c in ref.workspace) >= 10
    assert any((w.get("attempt") or 1) > 1 for w in ref.winning.values())
    outcomes = {ref.outcome(r) for c in ref.workspace for r in ref.runs_of(c)}
    assert {"completed", "completed_with_errors", "scheduled", "running"} <= outcomes


# -- stats and metrics ---------------------------------------------------------


def test_stats_match_reference(xc, ref):
    for cid, ws in all_campaigns(ref):
        got = data(call(xc, f"/v1/campaign/{cid}/stats", KEY_OF[ws]))
        assert got == ref.stats(cid), cid
        counts = got["recipient_counts"]
        assert sum(v for k, v in counts.items() if k != "total") == counts["total"]


def test_stats_of_the_retry_edge(xc):
    got = data(call(xc, f"/v1/campaign/{RETRY_CID}/stats", ALPHA_ALL))
    assert got["recipient_counts"] == {"total": 8, "pending": 3, "sent": 0, "delivered": 1,
                                       "failed": 2, "skipped": 1, "retrying": 1}
    assert got["exhausted"] == 1
    assert got["retry_breakdown"] == [{"attempt": 1, "recipients": 3},
                                      {"attempt": 2, "recipients": 1},
                                      {"attempt": 3, "recipients": 1}]
    assert got["attempts"] == {"total": 8, "average_per_recipient": 1.0}
    assert got["batch_counts"] == {"pending": 1, "running": 1, "completed": 0, "failed": 0}


def test_stats_zero_without_runs(xc):
    got = data(call(xc, f"/v1/campaign/{NO_RUN_CID}/stats", ALPHA_ALL))
    assert got["attempts"] == {"total": 0, "average_per_recipient": 0.0}
    assert got["recipient_counts"]["total"] == 0 and got["retry_breakdown"] == []


def test_metrics_match_reference(xc, ref):
    for cid, ws in all_campaigns(ref):
        assert data(call(xc, f"/v1/campaign/{cid}/metrics", KEY_OF[ws])) == ref.metrics(cid)
    got = data(call(xc, f"/v1/campaign/{NO_RUN_CID}/metrics", ALPHA_ALL))
    assert got["counts"] == dict.fromkeys(
        ("scheduled", "submitted", "sent", "failed", "skipped", "delivered"), 0)


# -- summary and execution -----------------------------------------------------


def test_summary_and_execution_match_reference(xc, ref):
    for cid, ws in all_campaigns(ref):
        assert data(call(xc, f"/v1/campaign/{cid}/execution", KEY_OF[ws])) == ref.execution(
            cid, NOW), cid
        assert data(call(xc, f"/v1/campaign/{cid}/summary", KEY_OF[ws])) == ref.summary(
            cid, NOW), cid


@pytest.mark.parametrize(("cid", "state"), [
    (NO_RUN_CID, "not_scheduled"), (FUTURE_CID, "scheduled"), (OVERDUE_CID, "pending_or_overdue"),
    (ORPHAN_CID, "pending_or_overdue"), (RETRY_CID, "running"),
])
def test_execution_states(xc, cid, state):
    assert data(call(xc, f"/v1/campaign/{cid}/execution", ALPHA_ALL))["state"] == state


def test_execution_state_follows_the_clock_and_so_does_the_etag(xc, monkeypatch):
    path = f"/v1/campaign/{FUTURE_CID}/execution"
    first = call(xc, path, ALPHA_ALL)
    assert first.json()["data"]["state"] == "scheduled"
    tag = first.headers["ETag"]
    assert xc.get(path, headers={"X-API-Key": ALPHA_ALL, "If-None-Match": tag}).status_code == 304
    monkeypatch.setattr(breakdowns, "now_utc", lambda: datetime(2099, 1, 2, tzinfo=UTC))
    later = xc.get(path, headers={"X-API-Key": ALPHA_ALL, "If-None-Match": tag})
    assert later.status_code == 200 and later.json()["data"]["state"] == "pending_or_overdue"


def test_summary_holds_nothing_private(xc):
    got = data(call(xc, f"/v1/campaign/{RETRY_CID}/summary", ALPHA_ALL))
    text = str(got)
    assert "2557" not in text and "recipients" not in got
    assert got["provider"] == "mock" and got["campaign_type"] == "broadcast"


# -- campaigns and run history ---------------------------------------------------


@pytest.mark.parametrize("ws", ["ws_alpha", "ws_beta", "ws_gamma"])
def test_campaign_list_is_the_workspace_only(xc, ref, ws):
    want = [ref.campaign_item(c) for c in ref.campaigns_of(ws)]
    items, meta = page(call(xc, "/v1/campaigns", KEY_OF[ws], limit=200))
    assert items == want
    assert meta == {"total": len(want), "limit": 200, "offset": 0}
    # Paged by 2: the same list, each campaign once.
    walked = []
    for offset in range(0, len(want) + 2, 2):
        chunk, meta = page(call(xc, "/v1/campaigns", KEY_OF[ws], limit=2, offset=offset))
        assert meta["total"] == len(want)
        walked += chunk
    assert walked == want


def test_campaign_list_edges(xc, ref):
    items = {c["campaign_id"]: c for c in page(call(xc, "/v1/campaigns", ALPHA_ALL, limit=200))[0]}
    assert items[FUTURE_CID]["latest_run"] == {"run_id": "run_next", "status": "scheduled",
                                               "outcome": "scheduled", "run_number": 2}
    assert items[NO_RUN_CID]["latest_run"] is None and items[NO_RUN_CID]["run_count"] == 0
    assert items[NO_RUN_CID]["delivery_rate"] is None  # nothing sent
    assert any(c["delivery_rate"] is not None and 0 < c["delivery_rate"] <= 1
               for c in items.values())
    assert items[UNDEFINED_CID]["name"] is None
    assert BETA_CID not in items
    got, meta = page(call(xc, "/v1/campaigns", ALPHA_ALL, offset=10_000))
    assert got == [] and meta["total"] == len(ref.campaigns_of("ws_alpha"))


def test_run_history_matches_reference(xc, ref):
    for cid, ws in all_campaigns(ref):
        items, meta = page(call(xc, f"/v1/campaign/{cid}/runs", KEY_OF[ws]))
        assert items == ref.run_history(cid), cid
        assert meta == {"total": len(ref.runs_of(cid)), "limit": 50, "offset": 0}


def test_run_history_outcomes(xc):
    items, _ = page(call(xc, f"/v1/campaign/{FUTURE_CID}/runs", ALPHA_ALL))
    assert [(r["run_id"], r["run_number"], r["outcome"]) for r in items] == [
        ("run_next", 2, "scheduled"), ("run_done", 1, "completed_with_errors")]
    assert items[1]["error"] is None  # the completion came first
    items, _ = page(call(xc, f"/v1/campaign/{OVERDUE_CID}/runs", ALPHA_ALL, limit=1, offset=1))
    assert [r["outcome"] for r in items] == ["cancelled"]
    assert call(xc, f"/v1/campaign/{OVERDUE_CID}/runs", ALPHA_ALL, limit=51).status_code == 422


# -- batches --------------------------------------------------------------------


def test_batches_match_reference(xc, ref):
    for cid, ws in all_campaigns(ref):
        want = ref.batches(cid)
        items, meta = page(call(xc, f"/v1/campaign/{cid}/batches", KEY_OF[ws], limit=200))
        assert items == want, cid
        assert meta["total"] == len(want)
        for status in ("pending", "running", "completed", "failed"):
            sub = [b for b in want if b["status"] == status]
            items, meta = page(call(xc, f"/v1/campaign/{cid}/batches", KEY_OF[ws], limit=200,
                                    status=status))
            assert items == sub and meta["total"] == len(sub), (cid, status)


def test_batches_paging_and_run_filter(xc, ref):
    cid = max(ref.workspace, key=lambda c: len(ref.batches(c)))
    want = ref.batches(cid)
    assert len(want) >= 2
    key = KEY_OF[ref.workspace[cid]]
    walked = []
    for skip in range(0, len(want)):
        items, meta = page(call(xc, f"/v1/campaign/{cid}/batches", key, skip=skip, limit=1))
        assert meta == {"total": len(want), "limit": 1, "offset": skip}
        walked += items
    assert walked == want
    items, meta = page(call(xc, f"/v1/campaign/{cid}/batches", key, skip=len(want)))
    assert items == [] and meta["total"] == len(want)
    rid = want[-1]["run_id"]
    items, _ = page(call(xc, f"/v1/campaign/{cid}/batches", key, run_id=rid, limit=200))
    assert items == [b for b in want if b["run_id"] == rid]
    assert call(xc, f"/v1/campaign/{cid}/batches", key, limit=201).status_code == 422
    assert call(xc, f"/v1/campaign/{cid}/batches", key, status="done").status_code == 422


def test_batch_counters_of_the_retry_edge(xc):
    items, _ = page(call(xc, f"/v1/campaign/{RETRY_CID}/batches", ALPHA_ALL))
    assert [b["batch_id"] for b in items] == ["rb1", "rb2"]  # rb9 is known only from a submit
    assert items[0]["counters"] == {"pending": 0, "sent": 0, "delivered": 1, "failed": 1,
                                    "skipped": 1, "retrying": 1}
    assert items[1]["counters"]["pending"] == 1


# -- recipients -----------------------------------------------------------------


def test_recipients_match_reference_for_every_run(xc, ref):
    for cid, ws in all_campaigns(ref):
        for rid in ref.runs_of(cid):
            want = ref.recipient_items(rid)
            got: list[Any] = []
            offset = 0
            while True:
                items, meta = page(call(xc, f"/v1/campaign/{cid}/runs/{rid}/recipients",
                                        KEY_OF[ws], limit=64, offset=offset))
                assert meta == {"total": len(want), "limit": 64, "offset": offset}
                if not items:
                    break
                got += items
                offset += 64
            assert got == want, (cid, rid)


def test_recipient_status_filter(xc, ref):
    cid = next(c for c in sorted(ref.workspace) if ref.workspace[c] == "ws_alpha"
               and ref.runs_of(c) and len(ref.recipients(ref.runs_of(c)[0])) > 100)
    rid = ref.runs_of(cid)[0]
    want = ref.recipient_items(rid)
    for status in ("pending", "sent", "delivered", "failed", "skipped"):
        sub = [r for r in want if r["recipient_status"] == status]
        items, meta = page(call(xc, f"/v1/campaign/{cid}/runs/{rid}/recipients", ALPHA_ALL,
                                limit=200, status=status))
        assert items == sub[:200] and meta["total"] == len(sub), status


def test_recipients_of_the_retry_edge(xc, ref):
    items, meta = page(call(xc, f"/v1/campaign/{RETRY_CID}/runs/{RETRY_RUN}/recipients",
                            ALPHA_ALL))
    # batch 1 by id, batch 2, then the recipient with no batch.created last.
    assert [r["recipient_id"] for r in items] == ["x1", "x2", "x3", "x4", "a0", "z9"]
    assert meta["total"] == 6
    x1 = items[0]
    assert [a["attempt"] for a in x1["attempts"]] == [1, 2]
    assert x1["attempts"][1]["delivery_status"] == "delivered"  # terminal beats a later accepted
    assert x1["attempts"][0]["message_id"] is None and x1["attempts"][0]["reason"] == "timeout"
    assert [a["attempt"] for a in items[2]["attempts"]] == [1, 2, 3]
    assert items[5]["batch_sequence"] is None and items[5]["recipient_status"] == "failed"


def test_recipient_paging_edges(xc):
    path = f"/v1/campaign/{RETRY_CID}/runs/{RETRY_RUN}/recipients"
    items, meta = page(call(xc, path, ALPHA_ALL, offset=6))
    assert items == [] and meta == {"total": 6, "limit": 50, "offset": 6}
    items, meta = page(call(xc, path, ALPHA_ALL, offset=10**9))
    assert items == [] and meta["total"] == 6
    items, _ = page(call(xc, path, ALPHA_ALL, limit=200))
    assert len(items) == 6
    for bad in ({"limit": 201}, {"limit": 0}, {"offset": -1}, {"status": "retrying"}):
        resp = call(xc, path, ALPHA_ALL, **bad)
        assert resp.status_code == 422, bad
        assert resp.json()["errors"][0]["code"] == "VALIDATION_ERROR"
        assert next(iter(bad)) in resp.json()["errors"][0]["message"]


def test_phones_are_masked_without_pii_read(xc, ref):
    path = f"/v1/campaign/{BETA_CID}/runs/run_beta/recipients"
    full, _ = page(call(xc, path, BETA_ALL))
    masked = xc.get(path, headers={"X-API-Key": BETA_NO_PII})
    items, _ = page(masked)
    assert full == ref.recipient_items("run_beta")
    assert items == ref.recipient_items("run_beta", show_phone=False)
    assert items[0]["phone_number"] == "*********001"
    # The ETag differs: a masked answer never validates a full one.
    tag = masked.headers["ETag"]
    again = xc.get(path, headers={"X-API-Key": BETA_ALL, "If-None-Match": tag})
    assert again.status_code == 200


def test_recipients_csv_streams_the_whole_run(xc, ref):
    cid = next(c for c in sorted(ref.workspace) if ref.workspace[c] == "ws_alpha"
               and ref.runs_of(c) and len(ref.recipients(ref.runs_of(c)[0])) > 100)
    rid = ref.runs_of(cid)[0]
    resp = xc.get(f"/v1/campaign/{cid}/runs/{rid}/recipients",
                  headers={"X-API-Key": ALPHA_ALL, "Accept": "text/csv"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    want = ref.recipient_items(rid)
    assert [r["recipient_id"] for r in rows] == [w["recipient_id"] for w in want]
    for row, w in zip(rows, want, strict=True):
        assert row["phone_number"] == w["phone_number"]
        assert row["recipient_status"] == w["recipient_status"]
        assert row["attempts"] == str(len(w["attempts"]))
        assert row["message_id"] == (w["message_id"] or "")
    # status filter applies; paging does not
    resp = xc.get(f"/v1/campaign/{cid}/runs/{rid}/recipients", params={"status": "skipped"},
                  headers={"X-API-Key": ALPHA_ALL, "Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["recipient_id"] for r in rows] == [
        w["recipient_id"] for w in want if w["recipient_status"] == "skipped"]


def test_csv_needs_pii_read(xc):
    path = f"/v1/campaign/{RETRY_CID}/runs/{RETRY_RUN}/recipients"
    resp = xc.get(path, headers={"X-API-Key": ALPHA_CAMPAIGNS, "Accept": "text/csv"})
    assert resp.status_code == 403
    assert resp.json()["errors"][0]["code"] == "INSUFFICIENT_SCOPE"
    assert "pii:read" in resp.json()["errors"][0]["message"]
    # JSON for the same key is fine (masked).
    assert xc.get(path, headers={"X-API-Key": ALPHA_CAMPAIGNS}).status_code == 200


# -- auth ---------------------------------------------------------------------------

ENDPOINTS = [
    ("/v1/campaign/{cid}/stats", "analytics:read"),
    ("/v1/campaign/{cid}/metrics", "analytics:read"),
    ("/v1/campaign/{cid}/summary", "campaigns:read"),
    ("/v1/campaign/{cid}/execution", "campaigns:read"),
    ("/v1/campaign/{cid}/runs", "campaigns:read"),
    ("/v1/campaign/{cid}/batches", "campaigns:read"),
    ("/v1/campaign/{cid}/runs/" + RETRY_RUN + "/recipients", "campaigns:read"),
]


@pytest.mark.parametrize(("template", "scope"), ENDPOINTS)
def test_auth_order_and_no_data_leaks(xc, template, scope):
    path = template.format(cid=RETRY_CID)
    resp = call(xc, path, None)
    assert resp.status_code == 401 and resp.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert call(xc, path, "not-a-key").status_code == 401
    lacking = ALPHA_CAMPAIGNS if scope == "analytics:read" else ALPHA_ANALYTICS
    resp = call(xc, path, lacking)
    assert resp.status_code == 403
    assert resp.json()["errors"][0]["code"] == "INSUFFICIENT_SCOPE"
    # Another workspace: 403 with no data at all.
    for key in (BETA_ALL, GAMMA_ALL):
        resp = call(xc, path, key)
        assert resp.status_code == 403, key
        body = resp.json()
        assert body["data"] is None and body["errors"][0]["code"] == "FORBIDDEN"
        assert "meta" not in body and "x1" not in resp.text
    resp = call(xc, template.format(cid="nope"), ALPHA_ALL)
    assert resp.status_code == 404 and resp.json()["errors"][0]["code"] == "CAMPAIGN_NOT_FOUND"
    assert call(xc, path, ALPHA_ALL).status_code == 200


def test_recipients_of_a_run_of_another_campaign_is_404(xc):
    resp = call(xc, f"/v1/campaign/{FUTURE_CID}/runs/{RETRY_RUN}/recipients", ALPHA_ALL)
    assert resp.status_code == 404 and resp.json()["errors"][0]["code"] == "RUN_NOT_FOUND"


def test_campaign_list_auth(xc):
    assert call(xc, "/v1/campaigns", None).status_code == 401
    resp = call(xc, "/v1/campaigns", ALPHA_ANALYTICS)
    assert resp.status_code == 403 and resp.json()["errors"][0]["code"] == "INSUFFICIENT_SCOPE"
    assert call(xc, "/v1/campaigns", ALPHA_ALL, limit=201).status_code == 422


def test_list_etag_gives_304_while_nothing_changes(xc):
    path = f"/v1/campaign/{RETRY_CID}/batches"
    first = call(xc, path, ALPHA_ALL)
    tag = first.headers["ETag"]
    again = xc.get(path, headers={"X-API-Key": ALPHA_ALL, "If-None-Match": tag})
    assert again.status_code == 304 and again.headers["ETag"] == tag
    other = xc.get(path, params={"limit": 1},
                   headers={"X-API-Key": ALPHA_ALL, "If-None-Match": tag})
    assert other.status_code == 200
