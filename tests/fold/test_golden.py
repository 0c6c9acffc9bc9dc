"""The fold reproduces the contract's golden example field by field."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from api.payloads import campaign as views
from projector.fold.state import State
from tests.fixtures.golden import (
    EXAMPLES,
    LOCAL_EXAMPLES,
    SHARED_EXAMPLES,
    golden_events,
    golden_expected,
)


def project(state: State, campaign: tuple[str, str]) -> dict:
    """What the golden file records for one campaign, computed from a State."""
    runs = state.runs_of(campaign)
    row = state.campaigns[campaign]
    out_runs = {}
    for run in runs:
        batches = state.batches_of(run.key)
        recipients = views.listed_recipients(state.recipients_of(run.key), batches)
        detail = views.run_detail_payload(
            row,
            run,
            state.snapshots.get(run.key),
            batches,
            recipients,
            more_recipients=False,
        )
        out_runs[run.run_id] = {
            **detail["run"],
            "batches": detail["batches"],
            "recipients": detail["recipients"],
            "recipient_summary": detail["recipient_summary"],
        }
    ws, cid = campaign
    return {
        "workspace_id": ws,
        "status": views.status_payload(cid, views.latest_run(runs)),
        "analytics": views.analytics_payload(cid, ws, runs),
        "runs": out_runs,
    }


def assert_matches_golden(state: State, example: str = "basic") -> None:
    expected = golden_expected(example)
    assert sorted(state.campaigns) == sorted(
        (want["workspace_id"], cid) for cid, want in expected.items()
    )
    for cid, want in expected.items():
        got = project(state, (want["workspace_id"], cid))
        assert got["status"] == want["status"], cid
        assert got["analytics"] == want["analytics"], cid
        assert sorted(got["runs"]) == sorted(want["runs"]), cid
        for rid, want_run in want["runs"].items():
            got_run = got["runs"][rid]
            for key, value in want_run.items():
                assert got_run[key] == value, (cid, rid, key)


@pytest.mark.parametrize("example", EXAMPLES)
def test_golden_in_file_order(example):
    state = State()
    state.apply(golden_events(example))
    assert_matches_golden(state, example)


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("seed", range(20))
def test_golden_shuffled_with_duplicates_and_small_batches(seed, example):
    rng = random.Random(seed)
    events = golden_events(example)
    events = events + rng.sample(events, k=len(events) // 2)
    rng.shuffle(events)
    state = State()
    i = 0
    while i < len(events):
        n = rng.randint(1, 20)
        state.apply(events[i : i + n])
        i += n
    assert_matches_golden(state, example)


@pytest.mark.parametrize("example", EXAMPLES)
def test_golden_reversed_one_event_per_batch(example):
    state = State()
    for ev in reversed(golden_events(example)):
        state.apply([ev])
    assert_matches_golden(state, example)


@pytest.mark.parametrize("example", EXAMPLES)
def test_golden_without_its_duplicates(example):
    """Each event once (the files hold redeliveries): the same projections."""
    unique = list({ev.event_id: ev for ev in golden_events(example)}.values())
    assert len(unique) < len(golden_events(example))
    state = State()
    state.apply(unique)
    assert_matches_golden(state, example)


@pytest.mark.parametrize("example", EXAMPLES)
def test_golden_copies_match_the_shared_contract(example):
    shared = SHARED_EXAMPLES / example
    if not (shared / "expected.json").exists():
        pytest.skip("no shared/ beside this clone; the local copy is used")
    for name in ("events.jsonl", "expected.json"):
        local = LOCAL_EXAMPLES / example / name
        assert local.read_bytes() == (shared / name).read_bytes(), (example, name)


def test_docs_copy_of_the_contract_matches_the_shared_contract():
    shared = SHARED_EXAMPLES.parent / "EVENTS.md"
    if not shared.exists():
        pytest.skip("no shared/ beside this clone")
    copy = Path(__file__).resolve().parents[2] / "docs" / "contract-EVENTS.md"
    body = copy.read_text().split("\n", 1)[1]  # below the comment that says it is a copy
    assert body == shared.read_text()
