"""Receipts that never come: ``receipt_overdue`` in status, analytics, stats and the stream.

Checked against an independent reference (plain Python over the events: the
campaign's clock is the latest event time of its runs, F8; a sent recipient
whose winning message has no terminal report and whose send is older than the
window is overdue), over generated histories in hostile orders with
redeliveries, read beside the writer (the polls' memory path) and over DuckDB.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.readstore import ReadStore
from api.routes.stream import read_status
from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.settings import Settings
from projector.store.writer import Store
from schemas import CampaignDefined, MessageDlr, MessageSubmitted, RunScheduled
from tests.api.conftest import EventFactory
from tests.api.test_insight import TERMINAL, _key, _keyring, insight_histories
from tests.fixtures.scenarios import hostile

CID, RUN = "c-receipts", "run-receipts"
T0 = datetime(2026, 5, 12, 8, 0, tzinfo=UTC)


@contextmanager
def served(events: list[Any], chunk: int, window: timedelta, *, memory: bool
           ) -> Iterator[tuple[TestClient, Any]]:
    """(client, app context) over a real store holding ``events``; ``memory``: the reader
    beside the writer (polls answered from its memory when they can be)."""
    workspaces = {e.workspace_id for e in events} | {"ws_alpha"}
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "r.duckdb") as store:
        for i in range(0, len(events), chunk):
            store.flush(events[i : i + chunk], {})
        reader = (ReadStore(store.cursor, heads=store.heads, polled=store.polled) if memory
                  else ReadStore(store.cursor))  # fmt: skip
        status = PipelineStatus(ready=True, offsets={}, flush_seq=store.seq)
        app = create_app(reader, keys=_keyring(workspaces), status=status.snapshot,
                         metrics=Metrics(), receipt_window=window)  # fmt: skip
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client, app.state.ctx


def overdue_reference(events: list[Any], window: timedelta) -> dict[tuple[str, str, str], int]:
    """Per (workspace, campaign, run): overdue receipts, from the events alone."""
    clock: dict[tuple[str, str], datetime] = {}
    submit: dict[tuple[str, str, str, str], Any] = {}
    report: dict[tuple[str, str, str, str], Any] = {}
    runs: set[tuple[str, str, str]] = set()
    for e in events:
        run_id = getattr(e, "run_id", None)
        if run_id is None:
            continue
        c = (e.workspace_id, e.campaign_id)
        runs.add((*c, run_id))
        clock[c] = max(clock.get(c, e.occurred_at), e.occurred_at)
        if e.type == "message.submitted":
            k = (*c, run_id, e.recipient_id)
            cur = submit.get(k)
            if cur is None or (e.attempt, e.occurred_at, e.event_id) > (
                    cur.attempt, cur.occurred_at, cur.event_id):  # fmt: skip
                submit[k] = e
        elif e.type == "message.dlr":
            k = (*c, run_id, e.message_id)
            cur = report.get(k)
            if cur is None or (e.status in TERMINAL, e.occurred_at, e.event_id) > (
                    cur.status in TERMINAL, cur.occurred_at, cur.event_id):  # fmt: skip
                report[k] = e
    out = dict.fromkeys(runs, 0)
    for (ws, cid, rid, _), s in submit.items():
        if s.outcome != "sent":
            continue
        rep = report.get((ws, cid, rid, s.message_id))
        pending = rep is None or rep.status not in TERMINAL
        if pending and s.occurred_at < clock[(ws, cid)] - window:
            out[(ws, cid, rid)] += 1
    return out


def read_all(client: TestClient, ctx: Any, campaigns: set[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ws, cid in sorted(campaigns):
        h = {"X-API-Key": _key(ws)}
        status = client.get(f"/v1/campaign/{cid}/status", headers=h).json()["data"]
        analytics = client.get(f"/v1/campaign/{cid}/analytics", headers=h).json()["data"]
        stats = client.get(f"/v1/campaign/{cid}/stats", headers=h).json()["data"]
        streamed = read_status(ctx, (ws, cid))
        assert streamed is not None and streamed[1] == status  # the stream's data is /status's
        out[f"{ws}:{cid}"] = (status.get("campaign_run_id"), status.get("receipt_overdue"),
                              analytics["receipt_overdue_count"], stats["receipt_overdue"],
                              analytics["pending_delivery_count"])  # fmt: skip
    return out


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=insight_histories(), data=st.data(),
       window_s=st.sampled_from([1, 20, 600, 20000]))  # fmt: skip
def test_overdue_matches_the_reference_in_any_order(
    events: list[Any], data: st.DataObject, window_s: int
) -> None:
    window = timedelta(seconds=window_s)
    want = overdue_reference(events, window)
    campaigns = {(ws, cid) for ws, cid, _ in want}
    got = []
    for memory in (True, False):
        order = hostile(events, data)
        chunk = data.draw(st.integers(1, max(1, len(order))), label="chunk")
        with served(order, chunk, window, memory=memory) as (client, ctx):
            got.append(read_all(client, ctx, campaigns))
    assert got[0] == got[1]
    for (ws, cid), (run_id, status_n, analytics_n, stats_n, pending) in (
        (tuple(k.split(":", 1)), v) for k, v in got[0].items()
    ):
        per_run = {r: n for (w, c, r), n in want.items() if (w, c) == (ws, cid)}
        assert analytics_n == stats_n == sum(per_run.values())
        assert analytics_n <= pending
        if run_id is not None:
            assert status_n == per_run.get(run_id, 0)


def _history(late: timedelta) -> list[Any]:
    """10 sent at T0: 3 delivered, 1 rejected, 1 with only an "accepted" report; 2 sent at
    T0 + 10 h; then a report at T0 + ``late`` moves the campaign's clock."""
    ev = EventFactory(start=T0 - timedelta(minutes=1))
    out = [ev(CampaignDefined, campaign_id=CID, name="R", channel="SMS", provider="mock"),
           ev(RunScheduled, campaign_id=CID, run_id=RUN, scheduled_at=T0, recipient_count=12)]

    def sent(i: int, at: datetime) -> Any:
        return ev(MessageSubmitted, campaign_id=CID, run_id=RUN, batch_id="b1",
                  recipient_id=f"r{i:02d}", phone_number="2557", outcome="sent",
                  message_id=f"m{i:02d}", occurred_at=at)

    def dlr(i: int, status: str, at: datetime) -> Any:
        return ev(MessageDlr, campaign_id=CID, run_id=RUN, message_id=f"m{i:02d}",
                  status=status, occurred_at=at)

    out += [sent(i, T0) for i in range(10)]
    out += [dlr(i, "delivered", T0 + timedelta(seconds=5)) for i in range(3)]
    out += [dlr(3, "rejected", T0 + timedelta(seconds=5)), dlr(4, "accepted", T0)]
    out += [sent(i, T0 + timedelta(hours=10)) for i in (10, 11)]
    out.append(dlr(0, "delivered", T0 + late))  # a late duplicate report: only the clock moves
    return out


@pytest.mark.parametrize("memory", [True, False])
@pytest.mark.parametrize(("late", "window", "overdue"), [
    (timedelta(hours=80), timedelta(hours=72), 6),   # T0's 6 pending are older than 72 h
    (timedelta(hours=80), timedelta(hours=90), 0),   # a longer window
    (timedelta(hours=72), timedelta(hours=72), 0),   # exactly the window: not older than it
    (timedelta(hours=72, microseconds=1), timedelta(hours=72), 6),
    (timedelta(hours=160), timedelta(hours=72), 8),  # the later sends too
])  # fmt: skip
def test_overdue_by_hand(late: timedelta, window: timedelta, overdue: int, memory: bool) -> None:
    with served(_history(late), 5, window, memory=memory) as (client, ctx):
        got = read_all(client, ctx, {("ws_alpha", CID)})
    assert got[f"ws_alpha:{CID}"] == (RUN, overdue, overdue, overdue, 8)


def test_the_window_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().receipt_window == timedelta(hours=72)
    monkeypatch.setenv("PROJECTOR_RECEIPT_WINDOW", "PT6H")
    assert Settings().receipt_window == timedelta(hours=6)
    monkeypatch.setenv("PROJECTOR_RECEIPT_WINDOW", "3600")
    assert Settings().receipt_window == timedelta(hours=1)
    for text, want in (("72h", timedelta(hours=72)), ("90m", timedelta(minutes=90)),
                       ("3d", timedelta(days=3)), ("1.5h", timedelta(minutes=90))):
        monkeypatch.setenv("PROJECTOR_RECEIPT_WINDOW", text)
        assert Settings().receipt_window == want
    monkeypatch.setenv("PROJECTOR_RECEIPT_WINDOW", "0")
    with pytest.raises(ValueError, match="receipt_window"):
        Settings()
