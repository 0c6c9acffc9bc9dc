"""The benchmarks' simulated stream gives as many events as a benchmark names."""

from __future__ import annotations

import itertools

from bench.common import sim_events
from projector.tools.simulate import generate


def test_a_larger_ask_than_one_stream_gets_further_waves_of_distinct_campaigns():
    waves = [list(generate(2, 50, 11 + k)) for k in range(4)]
    ask = sum(len(w) for w in waves[:3]) + 17
    events = list(sim_events(ask, campaigns=2, recipients=50, seed=11))
    assert len(events) == ask
    assert events == [e for w in waves for e in w][:ask]  # the first wave as it was, then more
    assert len({e["event_id"] for e in events}) == ask
    campaigns = [{e["campaign_id"] for e in w} for w in waves]
    for a, b in itertools.combinations(campaigns, 2):
        assert not a & b


def test_a_smaller_ask_is_the_start_of_the_stream():
    assert list(sim_events(100, campaigns=2, recipients=50, seed=11)) == list(
        itertools.islice(generate(2, 50, 11), 100)
    )
