"""A fresh node with a store per partition catches up on one core (regression).

faust's ``Consumer.seek`` calls aiokafka's seek from the calling thread while
aiokafka's fetcher runs on faust's consumer thread; the seeks to the stored
offsets at the group join then raced the fetcher, which died of a KeyError
in ``fetched_records``. Opening a node's shards before those seeks gives the
fetcher time to fetch, and one core makes the threads interleave: a fresh
node catching up on array records died there (bench.catchup_scale). The
seeks now run on the consumer thread (``seek_wait``).
"""

from __future__ import annotations

import asyncio
import os

import pytest

from projector.store.verify import compare
from projector.tools.emit import EventEmitter
from projector.tools.simulate import generate
from tests.fixtures.processes import projector_env

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity (Linux)"
)


async def _produce(bootstrap, topics, events) -> None:
    async with EventEmitter(bootstrap, topics, array_size=100) as em:
        await em.emit_many(events)
        await em.flush()


def test_a_fresh_node_with_shards_catches_up_on_one_core(
    bootstrap, topics_factory, procs, tmp_path
):
    topics = topics_factory()
    events = list(generate(campaigns=20, recipients=1500, seed=29))
    asyncio.run(_produce(bootstrap, topics, events))
    env = projector_env(bootstrap, topics)
    shards = tmp_path / "shards"
    worker = procs.start(
        "worker", "--data-dir", str(shards), "--until-caught-up", env=env, log_name="worker"
    )
    os.sched_setaffinity(worker.pid, {0})
    code = worker.wait(timeout=240)
    log = open(worker.log_path, errors="replace").read()  # type: ignore[attr-defined]
    assert "KeyError" not in log, log[-3000:]
    assert code == 0, log[-3000:]
    # Every event once: the shards equal a replay of the topics into one file.
    procs.run("replay", "--db", str(tmp_path / "replayed.duckdb"), env=env, timeout=240)
    diff = compare(tmp_path / "replayed.duckdb", shards)
    assert diff.identical, diff.render()
