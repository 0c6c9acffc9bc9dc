"""Three ``projector serve`` nodes in one consumer group split the partitions.

Real processes on the embedded broker: each has its own database and
advertises its URL (--advertise); every node's ``/v1/cluster``
must show one map that covers every partition, and after a node stops
(SIGTERM, then SIGKILL) the two left cover everything and agree.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from projector.settings import Topics
from tests.fixtures.processes import Procs, keys_file, projector_env, start_serve
from tests.fixtures.waiting import wait_until

PARTITIONS = 8
# A join waits for the group's rebalance timeout, a SIGKILLed member is noticed
# after the session timeout (both 6 s: projector.intake.worker); this is headroom.
SETTLE_S = 90

pytestmark = pytest.mark.timeout(400)


class Node:
    def __init__(self, procs: Procs, env: dict[str, str], tmp: Path, name: str) -> None:
        self.proc, port, self.died = start_serve(
            procs, env, tmp / f"{name}.duckdb", tmp / "keys.json", advertise=True
        )
        self.url = f"http://127.0.0.1:{port}"

    def cluster(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/v1/cluster", timeout=5).json()["data"]  # type: ignore[no-any-return]

    def readyz(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/readyz", timeout=5).json()["data"]  # type: ignore[no-any-return]


def agreed(nodes: list[Node]) -> Callable[[], dict[str, str] | None]:
    """A check: the map every node shows, when all show the same settled map of these nodes."""

    def check() -> dict[str, str] | None:
        views = [n.cluster() for n in nodes]
        if not all(v["settled"] for v in views):
            return None
        maps = [v["owners"] for v in views]
        if any(m != maps[0] for m in maps):
            return None
        if set(maps[0].values()) != {n.url for n in nodes}:
            return None
        return maps[0]  # type: ignore[no-any-return]

    return check


def alive(nodes: list[Node]) -> Callable[[], str | None]:
    def check() -> str | None:
        return next((why for n in nodes if (why := n.died())), None)

    return check


def assert_split(owners: dict[str, str], nodes: list[Node]) -> None:
    assert sorted(int(p) for p in owners) == list(range(PARTITIONS))  # every partition once
    for n in nodes:
        view = n.cluster()
        assert view["url"] == n.url  # the port as bound is what the node advertises
        mine = sorted(int(p) for p, url in owners.items() if url == n.url)
        assert mine, f"{n.url} owns nothing"
        assert n.readyz()["cluster"]["owned"] == mine


def test_three_nodes_split_the_partitions_and_take_over_from_a_stopped_one(
    procs: Procs,
    topics_factory: Callable[..., Topics],
    bootstrap: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    topics = topics_factory(PARTITIONS)
    keys_file(tmp_path / "keys.json")
    env = projector_env(bootstrap, topics, partitions=PARTITIONS)  # one group for all
    t = time.monotonic()
    nodes = [Node(procs, env, tmp_path, f"node{i}") for i in range(3)]

    owners = wait_until("three nodes agree", agreed(nodes), SETTLE_S, alive(nodes))
    record_property("seconds_start_to_three_agree", round(time.monotonic() - t, 1))
    assert_split(owners, nodes)

    # A clean stop: the node leaves the group, the others take its partitions.
    t = time.monotonic()
    nodes[2].proc.send_signal(signal.SIGTERM)
    assert nodes[2].proc.wait(timeout=30) == 0
    rest = nodes[:2]
    owners = wait_until("two nodes agree after SIGTERM", agreed(rest), SETTLE_S, alive(rest))
    record_property("seconds_sigterm_to_two_agree", round(time.monotonic() - t, 1))
    assert_split(owners, rest)

    # A crash: the group notices when its session times out.
    t = time.monotonic()
    nodes.append(Node(procs, env, tmp_path, "node3"))
    three = [*rest, nodes[3]]
    wait_until("a new third node joins", agreed(three), SETTLE_S, alive(three))
    record_property("seconds_third_node_start_to_agree", round(time.monotonic() - t, 1))
    t = time.monotonic()
    nodes[3].proc.send_signal(signal.SIGKILL)
    nodes[3].proc.wait(timeout=10)
    owners = wait_until("two nodes agree after SIGKILL", agreed(rest), SETTLE_S, alive(rest))
    record_property("seconds_sigkill_to_two_agree", round(time.monotonic() - t, 1))
    assert_split(owners, rest)


def test_cli_cluster_prints_the_map(procs: Procs, topics_factory, bootstrap, tmp_path) -> None:
    topics = topics_factory(2)
    keys_file(tmp_path / "keys.json")
    env = projector_env(bootstrap, topics, partitions=2)
    node = Node(procs, env, tmp_path, "solo")
    wait_until("the node settles", agreed([node]), SETTLE_S, node.died)
    out = subprocess.run(
        [*_projector(), "cluster", "--url", node.url],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    for partition in ("0", "1"):
        assert [partition, node.url, "(this", "node)"] in rows, out.stdout


def _projector() -> list[str]:
    from tests.fixtures.processes import projector_cmd

    return projector_cmd()
