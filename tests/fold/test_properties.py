"""F1 and F2 as properties: any order, any duplicates, any batching, same state.

Also checks the maintained counters against an independent recount from the
rows, so a missed delta cannot hide behind a consistent wrong answer.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projector.fold.insight import contributions
from projector.fold.rows import DLR_TERMINAL
from projector.fold.state import State
from tests.fixtures.projections import dump, fold_in_batches
from tests.fixtures.scenarios import histories

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def recount(state: State) -> None:
    """Counters must equal a scan of the rows (the oracle the deltas replace)."""
    for run in state.runs.values():
        rs = state.recipients_of(run.key)
        sent = [r for r in rs if r.outcome == "sent"]
        assert run.known_recipients == len(rs)
        assert run.sent == len(sent)
        assert run.failed == sum(r.outcome == "failed" for r in rs)
        assert run.skipped == sum(r.outcome == "skipped" for r in rs)
        assert run.delivered == sum(r.delivery_status == "delivered" for r in sent)
        assert run.failed_delivery == sum(
            r.delivery_status in DLR_TERMINAL and r.delivery_status != "delivered" for r in sent
        )
        for r in sent:  # the winning report's state is copied into the row (F5)
            msg = state.messages.get((*run.key, r.message_id))
            assert (r.delivery_status, r.delivery_reported_at, r.delivery_error_code) == (
                (msg.status, msg.reported_at, msg.error_code) if msg else (None, None, None)
            )
        assert run.first_sent_at == min((r.sent_at for r in sent), default=None)
        assert run.last_sent_at == max((r.sent_at for r in sent), default=None)
        for r in rs:  # the winning submit is the highest attempt on record (F4)
            attempts = [n for (*rcp, n) in state.attempts if tuple(rcp) == r.key]
            assert r.attempt == (max(attempts) if attempts else None)
        batches = state.batches_of(run.key)
        assert run.batches_seen == sum(b.seen for b in batches)
        assert run.batches_completed == sum(b.terminal_status == "completed" for b in batches)
        for b in batches:
            assert b.sent_count == sum(r.submit_batch_id == b.batch_id for r in sent)
            assert b.failed_count == sum(
                r.submit_batch_id == b.batch_id and r.outcome == "failed" for r in rs
            )
    # The insight counts kept by difference equal a count over every recipient's facts.
    counted = Counter(fact for r in state.recipients.values() for fact in contributions(r))
    counted.update((*key[:3], "attempts", "", "", False, 0) for key in state.attempts)
    assert {fact: row.n for fact, row in state.insight.items()} == dict(counted)


@FAST
@given(data=st.data(), events=histories())
def test_any_permutation_duplicates_and_batching_fold_to_the_same_state(data, events):
    reference = State()
    reference.apply(events)
    recount(reference)

    shuffled = data.draw(st.permutations(events), label="order")
    dups = (
        data.draw(st.lists(st.sampled_from(events), max_size=len(events)), label="dups")
        if events
        else []
    )
    stream = list(shuffled)
    for d in dups:  # redeliveries at random positions, interleaved with the rest
        stream.insert(data.draw(st.integers(0, len(stream)), label="pos"), d)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")

    other = fold_in_batches(stream, cuts)
    recount(other)
    assert dump(other) == dump(reference)


@FAST
@given(events=histories())
def test_replaying_everything_again_changes_nothing(events):
    state = State()
    state.apply(events)
    before = dump(state)
    changes = state.apply(events)
    assert dump(state) == before
    assert changes.empty


def test_a_retry_in_another_batch_leaves_no_ghost_batch_row():
    """Regression: the losing attempt's batch must not linger as an empty row."""
    from schemas import EVENT_ADAPTER

    def submit(eid, batch, outcome, attempt):
        return EVENT_ADAPTER.validate_python(
            {
                "type": "message.submitted",
                "event_id": eid,
                "occurred_at": "2026-05-12T09:00:00Z",
                "workspace_id": "w",
                "campaign_id": "c",
                "run_id": "r",
                "batch_id": batch,
                "recipient_id": "x",
                "phone_number": "2557",
                "outcome": outcome,
                "message_id": "m" if outcome == "sent" else None,
                "attempt": attempt,
            }
        )

    first, retry = submit("e1", "b1", "failed", 1), submit("e2", "b0", "sent", 2)
    in_order, reversed_ = State(), State()
    in_order.apply([first])
    in_order.apply([retry])
    reversed_.apply([retry, first])
    assert dump(in_order) == dump(reversed_)
    assert list(in_order.batches) == [("w", "c", "r", "b0")]
