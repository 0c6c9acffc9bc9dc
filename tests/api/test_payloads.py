"""Payloads over HTTP equal the golden file and the in-memory fold, field by field."""

from __future__ import annotations

import pytest

from api.payloads import campaign as views
from projector.fold.state import State
from tests.api.conftest import (
    ALPHA_ALL,
    BETA_ALL,
    BIG_CID,
    BIG_RECIPIENTS,
    BIG_RUN,
    NO_RUN_CID,
    all_events,
    get,
)
from tests.fixtures.golden import golden_expected

KEY_OF = {"ws_alpha": ALPHA_ALL, "ws_beta": BETA_ALL}
GOLDEN = golden_expected()
RUN_LIST_FIELDS = ("batches", "recipients", "recipient_summary")
BIG = ("ws_alpha", BIG_CID, BIG_RUN)


@pytest.fixture(scope="module")
def state() -> State:
    s = State()
    s.apply(all_events())
    return s


def data(resp) -> dict:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is True and body["errors"] is None
    return body["data"]


@pytest.mark.parametrize("cid", sorted(GOLDEN))
def test_status_and_mirror_match_golden(client, cid):
    want = GOLDEN[cid]
    key = KEY_OF[want["workspace_id"]]
    assert data(get(client, f"/v1/campaign/{cid}/status", key)) == want["status"]
    assert data(get(client, f"/campaigns/{cid}/status", key)) == want["status"]


@pytest.mark.parametrize("cid", sorted(GOLDEN))
def test_analytics_match_golden(client, cid):
    want = GOLDEN[cid]
    got = data(get(client, f"/v1/campaign/{cid}/analytics", KEY_OF[want["workspace_id"]]))
    assert got == want["analytics"]


@pytest.mark.parametrize(
    ("cid", "rid"), [(c, r) for c in sorted(GOLDEN) for r in sorted(GOLDEN[c]["runs"])]
)
def test_run_detail_matches_golden_and_fold(client, state, cid, rid):
    want = GOLDEN[cid]["runs"][rid]
    got = data(get(client, f"/v1/campaign/{cid}/runs/{rid}", KEY_OF[GOLDEN[cid]["workspace_id"]]))
    for field, value in want.items():
        actual = got[field] if field in RUN_LIST_FIELDS else got["run"][field]
        assert actual == value, field
    assert got["recipients_truncated"] is False
    # Everything else (names, snapshot summary) as the fold's views build it.
    run = (GOLDEN[cid]["workspace_id"], cid, rid)
    batches = state.batches_of(run)
    recipients = views.listed_recipients(state.recipients_of(run), batches)
    expected = views.run_detail_payload(
        state.campaigns[run[:2]], state.runs[run], state.snapshots.get(run),
        batches, recipients, more_recipients=False,
    )
    assert got == expected


@pytest.mark.parametrize(
    ("cid", "rid"), [(c, r) for c in sorted(GOLDEN) for r in sorted(GOLDEN[c]["runs"])]
)
def test_snapshot_matches_fold(client, state, cid, rid):
    resp = get(client, f"/v1/campaign/{cid}/runs/{rid}/snapshot",
               KEY_OF[GOLDEN[cid]["workspace_id"]])
    run = (GOLDEN[cid]["workspace_id"], cid, rid)
    snap = state.snapshots.get(run)
    if snap is None:
        assert resp.status_code == 404
        assert resp.json()["errors"][0]["code"] == "SNAPSHOT_NOT_FOUND"
        return
    got = data(resp)
    assert got == views.snapshot_payload(state.runs[run], snap, include_recipients=False)
    assert "recipients" not in got


def test_no_run_sentinel(client):
    assert data(get(client, f"/v1/campaign/{NO_RUN_CID}/status")) == {
        "campaign_id": NO_RUN_CID,
        "status": "NO_RUN",
    }
    assert data(get(client, f"/campaigns/{NO_RUN_CID}/status"))["status"] == "NO_RUN"


def test_analytics_zeroed_with_null_rates_when_no_run(client):
    got = data(get(client, f"/v1/campaign/{NO_RUN_CID}/analytics"))
    assert got["campaign_id"] == NO_RUN_CID
    assert got["workspace_id"] == "ws_alpha"
    assert got["campaign_run_id"] is None
    assert got["delivery_rate"] is None and got["failure_rate"] is None
    counts = {k: v for k, v in got.items() if k.endswith("_count") or k == "total_recipients"}
    assert counts and all(v == 0 for v in counts.values())
    assert got["first_sent_at"] is None and got["last_sent_at"] is None
    assert got["completed_at"] is None


def test_large_run_is_capped_at_500_with_exact_summary(client, state):
    got = data(get(client, f"/v1/campaign/{BIG_CID}/runs/{BIG_RUN}"))
    assert got["recipients_truncated"] is True
    assert len(got["recipients"]) == views.RECIPIENTS_CAP == 500
    ordered = views.listed_recipients(state.recipients_of(BIG), state.batches_of(BIG))
    assert len(ordered) == BIG_RECIPIENTS
    assert got["recipients"] == [views.recipient_payload(r) for r in ordered[:500]]
    # F11 order: all of batch 1 (ids r0300..r0599) before batch 2 (r0000..).
    assert got["recipients"][0]["recipient_id"] == "r0300"
    assert got["recipients"][299]["recipient_id"] == "r0599"
    assert got["recipients"][300]["recipient_id"] == "r0000"
    summary = got["recipient_summary"]
    assert summary == views.recipient_summary(state.runs[BIG])
    assert summary == {
        "total": 600, "pending": 479, "sent": 36, "delivered": 60, "failed": 15, "skipped": 10,
    }
    assert sum(v for k, v in summary.items() if k != "total") == summary["total"]
    assert got["run"]["status"] == "running"  # claimed is shown as running
    assert [b["batch_sequence"] for b in got["batches"]] == [1, 2]


def test_status_of_large_run(client, state):
    got = data(get(client, f"/v1/campaign/{BIG_CID}/status"))
    assert got == views.status_payload(BIG_CID, state.runs[BIG])
    assert got["current_batch"] == 1 and got["total_batches"] == 2
