"""Guarantee 1: SIGKILL of ``projector serve`` at any instant loses and double counts nothing.

A simulator streams events while ``serve`` is killed again and again at
random moments. Flush bounds are tiny (50 events or 10 ms), so the DuckDB
writer is busy a large share of the time and kills land inside flush
transactions; the test measures that share (the flush duty cycle, from the
``projector_flush_seconds`` histogram) before every kill and reports it.
Afterwards ``projector worker --until-caught-up`` finishes the stream and the
database must equal, row for row, the pure fold of the produced events.
"""

from __future__ import annotations

import random
import time

import pytest

from projector.tools.simulate import generate
from tests.fixtures.processes import projector_env, tail
from tests.reliability.helpers import Serve, dump, fold_dicts, read_db


def _kill_serve_repeatedly(
    bootstrap, topics_factory, procs, tmp_path, *, kills, campaigns, recipients, rate
):
    topics = topics_factory()
    db = tmp_path / "p.duckdb"
    env = projector_env(bootstrap, topics, flush_max_events=50, flush_interval_ms=10)
    events = list(generate(campaigns=campaigns, recipients=recipients, seed=21))
    sim = procs.start(
        "simulate", "--campaigns", str(campaigns), "--recipients", str(recipients), "--seed", "21",
        "--rate", str(rate), env=env, log_name="simulate",
    )  # fmt: skip
    rng = random.Random(1234)
    duty: list[float] = []
    flushes_seen = 0
    during_stream = 0
    for i in range(kills):
        # A fresh consumer group per life: offsets live in DuckDB, and the
        # dead member would otherwise hold up the next join for its session.
        life_env = {**env, "PROJECTOR_GROUP_ID": f"{env['PROJECTOR_GROUP_ID']}-{i}"}
        serve = Serve(procs, life_env, db, tmp_path, log_name=f"serve{i}")
        serve.wait_listening()
        # Wait until this life has committed a flush (the group join takes
        # ~4 s), then kill at a random moment of the processing.
        serve.wait(
            "a first flush",
            lambda s=serve: s.metric("projector_flushes_total") >= 1 or sim.poll() is not None,
            30,
        )
        during_stream += sim.poll() is None
        t0 = time.monotonic()
        busy0 = serve.metric("projector_flush_seconds_sum")
        time.sleep(rng.uniform(0.2, 2.0))
        busy1 = serve.metric("projector_flush_seconds_sum")
        duty.append((busy1 - busy0) / (time.monotonic() - t0))
        flushes_seen += int(serve.metric("projector_flushes_total"))
        assert serve.alive() is None, tail(serve.proc)
        serve.kill()
    assert sim.wait(timeout=300) == 0, tail(sim)
    procs.run(
        "worker", "--db", str(db), "--until-caught-up", env=env, timeout=120, log_name="final"
    )
    assert read_db(db) == dump(fold_dicts(events))
    mean = sum(duty) / len(duty)
    print(
        f"\n{len(events)} events, {kills} SIGKILLs, {flushes_seen} flushes committed before "
        f"the kills, flush duty cycle before each kill: mean {mean:.0%}, "
        f"min {min(duty):.0%}, max {max(duty):.0%}"
        f" (expected kills inside a flush: {sum(duty):.1f})"
    )
    assert during_stream == kills, f"the stream ended before kill {during_stream + 1}: lengthen it"
    return duty


def test_sigkill_serve_at_twelve_random_moments(bootstrap, topics_factory, procs, tmp_path):
    """In the default suite: a 2-kill variant once missed a planted break that this caught."""
    duty = _kill_serve_repeatedly(
        bootstrap, topics_factory, procs, tmp_path, kills=12, campaigns=4, recipients=1000, rate=90
    )
    # With the writer this busy, several of the 12 kills land inside a flush.
    assert sum(duty) >= 2, duty


pytestmark = pytest.mark.timeout(600)
