"""``worker`` and ``serve`` refuse source topics of differing partition counts, before the group.

A campaign's events are keyed by ``campaign_id``: only equal counts put them
on the same partition of every source topic, the unit the group assigns.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.processes import Procs, keys_file, projector_env, tail
from tests.fixtures.topics import make_topics_with_counts


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_differing_partition_counts_exit_2_with_the_fix(
    command: str, bootstrap: str, procs: Procs, tmp_path: Path
) -> None:
    topics = make_topics_with_counts(bootstrap, lambda t: {t.dlrs: 8})
    env = projector_env(bootstrap, topics)
    args = [command, "--db", str(tmp_path / "p.duckdb")]
    if command == "serve":
        keys_file(tmp_path / "keys.json")
        args += ["--port", "0", "--api-keys", str(tmp_path / "keys.json")]
    p = procs.start(*args, env=env, log_name=command)
    assert p.wait(timeout=60) == 2, tail(p)
    said = Path(p.log_path).read_text()  # type: ignore[attr-defined]
    assert f"{topics.dlrs} has 8" in said and f"{topics.runs} has 4" in said, said
    assert "kafka-topics --alter" in said, said
    assert "Traceback" not in said, said
    assert "consumer group joined" not in said, said
