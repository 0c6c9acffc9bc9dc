"""``projector replay --data-dir``: shards rebuilt side by side equal the live shards.

The embedded broker, 4 partitions, the simulator's events keyed as producers
key them; the live node's shards are built by ``projector worker --data-dir``.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import duckdb
import pytest

from projector.rebuild.errors import ReplayError
from projector.rebuild.shards import build_one, rebuild_shards
from projector.settings import Settings
from projector.store.shards import shard_path, stored_partitions
from projector.store.verify import compare
from projector.tools.simulate import generate
from schemas.partitioner import partition_of
from tests.fixtures.kafka import produce
from tests.fixtures.processes import projector_cmd, projector_env
from tests.fixtures.projections import dump, fold_dicts, read_db

pytestmark = pytest.mark.timeout(400)
PARTITIONS = 4


def test_shards_rebuilt_in_parallel_equal_the_live_shards(
    bootstrap, topics_factory, procs, tmp_path
):
    topics = topics_factory(partitions=PARTITIONS)
    events = list(generate(campaigns=6, recipients=60, seed=29))
    asyncio.run(produce(bootstrap, topics, events, array_size=10))
    assert len({partition_of(e["campaign_id"], PARTITIONS) for e in events}) > 1
    env = projector_env(bootstrap, topics)
    live = tmp_path / "live"
    procs.run("worker", "--data-dir", str(live), "--until-caught-up", env=env, timeout=180,
              log_name="worker")  # fmt: skip

    rebuilt = tmp_path / "rebuilt"
    out = procs.run("replay", "--data-dir", str(rebuilt), "--workers", "2", env=env,
                    timeout=180, log_name="replay")  # fmt: skip
    assert "4 shards" in out and "2 workers" in out
    assert stored_partitions(rebuilt) == list(range(PARTITIONS))
    for p in range(PARTITIONS):
        diff = compare(shard_path(live, p), shard_path(rebuilt, p))
        assert diff.identical, (p, diff)
        # Each shard holds its partition's campaigns: their events, folded alone.
        mine = [e for e in events if partition_of(e["campaign_id"], PARTITIONS) == p]
        assert read_db(shard_path(rebuilt, p)) == dump(fold_dicts(mine))

    # verify compares sets of shards, and a set with one file of the same events.
    assert compare(live, rebuilt).identical
    code, text = _verify(procs, env, "--data-dir", str(live), "--data-dir", str(rebuilt))
    assert code == 0 and "IDENTICAL" in text, text
    one = tmp_path / "one.duckdb"
    procs.run("replay", "--db", str(one), env=env, timeout=180, log_name="replay-file")
    code, text = _verify(procs, env, "--db", str(one), "--data-dir", str(rebuilt))
    assert code == 0 and "IDENTICAL" in text, text
    # ... and can fail: a recipient gone from one shard.
    busy = partition_of(events[0]["campaign_id"], PARTITIONS)
    with duckdb.connect(str(shard_path(rebuilt, busy))) as con:
        con.execute("DELETE FROM recipients WHERE recipient_id = (SELECT min(recipient_id) "
                    "FROM recipients)")  # fmt: skip
    code, text = _verify(procs, env, "--data-dir", str(live), "--data-dir", str(rebuilt))
    assert code == 1 and "DIFFERENT" in text, text
    code, text = _verify(procs, env, "--data-dir", str(tmp_path / "empty-dir"), "--db", str(one))
    assert code == 2, text

    # One partition alone, as the restore of a moved partition would build it.
    alone = tmp_path / "alone"
    procs.run("replay", "--data-dir", str(alone), "--partition", "2", env=env, timeout=180,
              log_name="replay-one")  # fmt: skip
    assert stored_partitions(alone) == [2]
    assert compare(shard_path(live, 2), shard_path(alone, 2)).identical


def _verify(procs, env, *args: str) -> tuple[int, str]:
    p = subprocess.run(projector_cmd("verify", *args), env=env, capture_output=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def failing_build(settings, path, partition, since, from_archive, use_kafka):
    """A worker that fails for partition 1 (after the others have started)."""
    if partition == 1:
        raise RuntimeError("disk full (simulated)")
    return build_one(settings, path, partition, since, from_archive, use_kafka)


def test_a_failing_worker_leaves_no_shard_behind(bootstrap, topics_factory, tmp_path):
    topics = topics_factory(partitions=PARTITIONS)
    asyncio.run(produce(bootstrap, topics, list(generate(campaigns=4, recipients=30, seed=5))))
    settings = Settings(bootstrap=bootstrap, topics=topics)
    target = tmp_path / "shards"
    with pytest.raises(ReplayError, match="partition 1 failed: disk full"):
        rebuild_shards(settings, target, workers=2, progress=False, build=failing_build)
    assert list(target.iterdir()) == []


def test_a_rebuild_refuses_existing_shards_and_unknown_partitions(
    bootstrap, topics_factory, tmp_path
):
    topics = topics_factory(partitions=PARTITIONS)
    settings = Settings(bootstrap=bootstrap, topics=topics)
    target = tmp_path / "shards"
    target.mkdir()
    Path(shard_path(target, 3)).write_bytes(b"")
    with pytest.raises(ReplayError, match="exists"):
        rebuild_shards(settings, target, partitions=[3], progress=False)
    with pytest.raises(ReplayError, match="partition 9 does not exist"):
        rebuild_shards(settings, target, partitions=[9], progress=False)
    assert sorted(p.name for p in target.iterdir()) == ["partition-0003.duckdb"]
