"""Acceptance (issue 28): a node paused with SIGSTOP past the group's session,
then resumed, neither answers for nor writes to the partitions it lost.

Two ``projector serve`` nodes of one group on the embedded broker, 8
partitions, events flowing. One node is stopped (SIGSTOP); the test waits
until the other owns every partition, produces the rest of the events, and
waits until that node answers them exactly. Requests for the paused node's
campaigns are sent to it while it is stopped, so they are pending when it
resumes (SIGCONT) and run before anything else on it; more follow at once,
until both nodes agree on a map again. Each answer must be a 503 with
``Retry-After`` or equal to the truth (a single server's answer for every
event): never the paused node's stale status. At the end every answer from
every node is exact: nothing was applied twice.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.keys import KeyRing
from projector.settings import Topics
from projector.tools.simulate import generate
from schemas import EVENT_ADAPTER
from schemas.partitioner import partition_of
from tests.fixtures.kafka import produce
from tests.fixtures.processes import Procs, keys_file, projector_env, tail
from tests.fixtures.waiting import wait_until
from tests.service.test_cluster_blackbox import (
    Node,
    assert_every_answer_exact,
    owner_map,
    reference_client,
    runs_of,
)
from tests.service.test_tenancy_blackbox import answer

PARTITIONS = 8
CAMPAIGNS, RECIPIENTS, SEED = 10, 30, 2828


class Asker(threading.Thread):
    """Asks one node for the status of ``campaigns`` until stopped; sorts every answer.

    ``truth`` is each campaign's status as a single server holding every event
    answers it. An answer is fine if it is a 503 with ``Retry-After`` or equal
    to the truth; anything else is kept in ``stale``.
    """

    def __init__(
        self,
        url: str,
        campaigns: list[tuple[str, str]],
        keys: dict[str, str],
        truth: dict[str, Any],
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.campaigns, self.keys, self.truth = url, campaigns, keys, truth
        self.stop = threading.Event()
        self.codes: dict[int, int] = {}
        self.stale: list[str] = []
        self.stale_at: list[float] = []  # when each stale answer came
        self.first_answer_at: float | None = None  # of a request sent while the node was stopped
        self.pending_at_resume = 0
        self.first_code: int | None = None  # how the request pending at SIGCONT was answered

    def run(self) -> None:
        # Long timeout: the first requests wait for the stopped node to resume.
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while not self.stop.is_set():
                for ws, cid in self.campaigns:
                    sent = time.monotonic()
                    r = http.get(f"/v1/campaign/{cid}/status", headers={"X-API-Key": self.keys[ws]})
                    if self.first_answer_at is None:
                        self.first_answer_at = time.monotonic()
                        self.pending_at_resume = 1 if self.first_answer_at - sent > 1 else 0
                        self.first_code = r.status_code
                    self.codes[r.status_code] = self.codes.get(r.status_code, 0) + 1
                    if r.status_code == 503 and "Retry-After" in r.headers:
                        continue
                    got = answer(r.status_code, r.headers["content-type"], r.content)
                    if got != self.truth[cid]:
                        self.stale.append(f"{cid}: {r.status_code} {r.text[:300]}")
                        self.stale_at.append(time.monotonic())
                    time.sleep(0.005)  # repeatedly, but leave the two cores to the nodes

    def halt(self) -> None:
        self.stop.set()
        self.join(150)


@pytest.mark.timeout(480)
def test_a_node_paused_past_its_session_answers_nothing_stale_after_it_resumes(
    bootstrap: str,
    topics_factory: Callable[..., Topics],
    procs: Procs,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    raw = list(generate(CAMPAIGNS, RECIPIENTS, SEED))
    rng = random.Random(SEED)
    stream = raw + rng.sample(raw, k=len(raw) // 4)  # redeliveries
    rng.shuffle(stream)  # hostile order
    first = stream[: len(stream) // 2]
    second = stream[len(stream) // 2 :]
    events_first = [EVENT_ADAPTER.validate_python(e) for e in first]
    events_all = [EVENT_ADAPTER.validate_python(e) for e in raw]

    topics = topics_factory(partitions=PARTITIONS)
    keys = keys_file(tmp_path / "keys.json")
    ring = KeyRing.load(tmp_path / "keys.json")
    ref_first = reference_client(tmp_path / "first.duckdb", events_first, ring)
    ref_all = reference_client(tmp_path / "all.duckdb", events_all, ring)
    runs_first, runs_all = runs_of(events_first), runs_of(events_all)

    env = projector_env(bootstrap, topics, flush_max_events=200, flush_interval_ms=50, rate_limit=0)
    nodes = [Node(procs, env, tmp_path, f"node{i}") for i in range(2)]
    victim, survivor = nodes
    key = next(iter(keys.values()))

    def alive() -> str | None:
        return next((why for n in nodes if (why := n.died()) is not None), None)

    def exact(
        among: list[Node], ref: Any, runs: dict[tuple[str, str], list[str]]
    ) -> Callable[[], bool]:
        def check() -> bool:
            try:
                assert_every_answer_exact(among, ref, keys, runs)
            except AssertionError:
                return False
            return True

        return check

    askers: list[Asker] = []
    stopped = False
    try:
        owners = wait_until(
            "two nodes to agree on a settled owner map",
            lambda: owner_map(nodes, key, 2),
            120,
            alive,
        )
        asyncio.run(produce(bootstrap, topics, first, array_size=5))
        wait_until("every node to answer exactly", exact(nodes, ref_first, runs_first), 120, alive)

        # The paused node's campaigns, and what each must answer in the end.
        moved = sorted(
            (w, c) for (w, c) in runs_all if owners[partition_of(c, PARTITIONS)] == victim.url
        )
        truth = {}
        for w, c in moved:
            r = ref_all.get(f"/v1/campaign/{c}/status", headers={"X-API-Key": keys[w]})
            truth[c] = answer(r.status_code, r.headers["content-type"], r.content)
        before = {
            c: victim.http.get(f"/v1/campaign/{c}/status", headers={"X-API-Key": keys[w]})
            for w, c in moved
        }
        changed = [
            c for c, r in before.items()
            if answer(r.status_code, r.headers["content-type"], r.content) != truth[c]
        ]  # fmt: skip
        assert changed, "the events produced during the pause must change a moved campaign"

        victim.proc.send_signal(signal.SIGSTOP)
        stopped = True
        paused_at = time.monotonic()
        wait_until(
            "the other node to own every partition",
            lambda: owner_map([survivor], key, 1), 120, survivor.died,
        )  # fmt: skip
        takeover = time.monotonic() - paused_at
        asyncio.run(produce(bootstrap, topics, second, array_size=5))
        wait_until(
            "the other node to answer every event exactly",
            exact([survivor], ref_all, runs_all), 180, survivor.died,
        )  # fmt: skip

        # Requests pending on the stopped node: they run first when it resumes.
        askers = [Asker(victim.url, moved[i::3], keys, truth) for i in range(3)]
        for asker in askers:
            asker.start()
        time.sleep(1.5)  # let them connect and wait (any time works; this makes them pending)
        paused_for = time.monotonic() - paused_at
        victim.proc.send_signal(signal.SIGCONT)
        stopped = False
        resumed_at = time.monotonic()
        wait_until(
            "both nodes to agree on a map again", lambda: owner_map(nodes, key, 2), 120, alive
        )
        regrouped = time.monotonic() - resumed_at
        wait_until("every answer exact again", exact(nodes, ref_all, runs_all), 180, alive)
        settled_exact = time.monotonic() - resumed_at
        for asker in askers:
            asker.halt()

        codes: dict[int, int] = {}
        for asker in askers:
            for code, n in asker.codes.items():
                codes[code] = codes.get(code, 0) + n
        stale = [s for asker in askers for s in asker.stale]
        stale_at = sorted(t - resumed_at for asker in askers for t in asker.stale_at)
        pending = sum(a.pending_at_resume for a in askers)
        summary = (
            f"paused {paused_for:.1f} s (the other node owned everything {takeover:.1f} s "
            f"after SIGSTOP); after SIGCONT {pending} pending requests answered "
            f"{[a.first_code for a in askers]}, "
            f"polls by status {codes}, stale answers {len(stale)}"
            + (f" ({stale_at[0]:.1f} to {stale_at[-1]:.1f} s after SIGCONT)" if stale_at else "")
            + f"; both nodes agreed again "
            f"{regrouped:.1f} s and every answer was exact {settled_exact:.1f} s after SIGCONT"
        )
        print(summary)
        record_property("seconds_sigstop_to_takeover", round(takeover, 1))
        record_property("seconds_sigcont_to_regrouped", round(regrouped, 1))
        record_property("polls_after_sigcont", codes)
        assert not stale, (summary, stale[:5])
        assert pending > 0, "no request was pending on the stopped node"
        assert codes.get(503, 0) > 0, codes  # the fence answered, not luck

        # Every answer from every node is exact: nothing applied twice.
        assert_every_answer_exact(nodes, ref_all, keys, runs_all)
        lost = [
            float(line.split()[1])
            for line in victim.http.get("/metrics").text.splitlines()
            if line.startswith("projector_lease_lost_total ")
        ]
        assert lost and lost[0] >= 1, lost
        assert "lease lost: paused" in tail(victim.proc, 100000)
    finally:
        if stopped:
            victim.proc.send_signal(signal.SIGCONT)
        for asker in askers:
            asker.stop.set()
        for node in nodes:
            node.http.close()
