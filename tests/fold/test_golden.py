"""The fold reproduces the contract's golden example field by field."""

from __future__ import annotations

import random

import pytest

from projector import views
from projector.state import State
from tests.golden import golden_events, golden_expected


def project(state: State, campaign_id: str) -> dict:
    """What the golden file records for one campaign, computed from a State."""
    runs = state.runs_of(campaign_id)
    campaign = state.campaigns[campaign_id]
    out_runs = {}
    for run in runs:
        recipients = sorted(state.recipients_of(run.run_id), key=views.recipient_sort_key)
        detail = views.run_detail_payload(
            campaign, run, state.snapshots.get(run.run_id), state.batches_of(run.run_id),
            recipients, more_recipients=False,
        )
        out_runs[run.run_id] = {
            **detail["run"],
            "batches": detail["batches"],
            "recipients": detail["recipients"],
            "recipient_summary": detail["recipient_summary"],
        }
    return {
        "workspace_id": campaign.workspace_id,
        "status": views.status_payload(campaign_id, views.latest_run(runs)),
        "analytics": views.analytics_payload(campaign_id, campaign.workspace_id, runs),
        "runs": out_runs,
    }


def assert_matches_golden(state: State) -> None:
    expected = golden_expected()
    assert sorted(state.campaigns) == sorted(expected)
    for cid, want in expected.items():
        got = project(state, cid)
        assert got["workspace_id"] == want["workspace_id"], cid
        assert got["status"] == want["status"], cid
        assert got["analytics"] == want["analytics"], cid
        assert sorted(got["runs"]) == sorted(want["runs"]), cid
        for rid, want_run in want["runs"].items():
            got_run = got["runs"][rid]
            for key, value in want_run.items():
                assert got_run[key] == value, (cid, rid, key)


def test_golden_in_file_order():
    state = State()
    state.apply(golden_events())
    assert_matches_golden(state)


@pytest.mark.parametrize("seed", range(20))
def test_golden_shuffled_with_duplicates_and_small_batches(seed):
    rng = random.Random(seed)
    events = golden_events()
    events = events + rng.sample(events, k=len(events) // 2)
    rng.shuffle(events)
    state = State()
    i = 0
    while i < len(events):
        n = rng.randint(1, 20)
        state.apply(events[i : i + n])
        i += n
    assert_matches_golden(state)


def test_golden_reversed_one_event_per_batch():
    state = State()
    for ev in reversed(golden_events()):
        state.apply([ev])
    assert_matches_golden(state)


def test_golden_copy_matches_the_shared_contract():
    from tests.golden import LOCAL_GOLDEN, SHARED_GOLDEN

    if not (SHARED_GOLDEN / "expected.json").exists():
        import pytest

        pytest.skip("no shared/ beside this clone; the local copy is used")
    for name in ("events.jsonl", "expected.json"):
        assert (LOCAL_GOLDEN / name).read_bytes() == (SHARED_GOLDEN / name).read_bytes(), name
