"""A poller at a high rate never sees a status go back: real servers, restarts, a swap (issue 31).

``projector serve`` processes (the invariant mode on, as for every server the
suite starts) consume a simulated stream produced in a hostile order in
array records, while pollers in a process of their own ask for status and
analytics as fast as the servers answer (rate limits off). Each poller keeps,
per server, what it was answered: a campaign once answered never answers 404
again, once it showed a run it never says ``NO_RUN``, and a run's status never
moves back in F3's order (scheduled < running < terminal). Meanwhile:

* the consumer inside a server restarts: a second replica (``projector
  worker``, a database of its own) joins the server's consumer group and
  leaves it again; each time the group rebalances, the server's consumer
  gives up its partitions and is given them anew (faust then seeks to the
  group's committed offsets, which the replica moved, and the pipeline back
  to DuckDB's), while the API keeps its memory. (A SIGSTOP past the session
  timeout does not do it: Tansu expels no member, measured.)
* a server stops cleanly (SIGTERM) and starts again on the same file;
* a server is killed (SIGKILL) while records are arriving, and starts again;
* a server swaps to a database rebuilt by ``projector replay`` while more
  records arrive (``projector swap``).

Whenever the stream pauses (every server has applied everything produced),
every campaign's answers on every server equal the pure fold of the events
produced so far: a stale answer left cached at a campaign's last position
(the symptom of issue 31) shows there, where a poller's own sequence may not.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.payloads import campaign as views
from projector.settings import Topics
from projector.tools.broker import free_port
from projector.tools.emit import EventEmitter
from projector.tools.simulate import generate
from tests.fixtures.processes import Procs, keys_file, projector_env, tail, watermark_total
from tests.fixtures.waiting import wait_until
from tests.reliability.consistency.harness import fold_of, hostile_order
from tests.reliability.consistency.pollers import KEYS, Findings, poll_main


async def _describe(bootstrap: str, group: str) -> tuple[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        _error, _group, state, _type, _protocol, members = response.groups[0]
        return state, len(members)
    finally:
        await admin.close()


def group_settled(bootstrap: str, group: str, members: int) -> Callable[[], bool]:
    """A check: the group is Stable with ``members`` members (a rebalance is over)."""
    return lambda: asyncio.run(_describe(bootstrap, group)) == ("Stable", members)


class Server:
    """One ``projector serve`` across its lives: same port, same database (until a swap)."""

    def __init__(self, procs: Procs, env: dict[str, str], db: Path, keys: Path, name: str) -> None:
        self.procs, self.env, self.db, self.keys, self.name = procs, env, db, keys, name
        self.port = free_port()  # kept across lives: the pollers' URL stays valid
        self.lives = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def group(self) -> str:
        # A fresh group per life: a killed member would hold up the next join
        # for its session timeout (offsets live in DuckDB, not in the group).
        return f"{self.env['PROJECTOR_GROUP_ID']}-{self.name}-{self.lives}"

    def start(self) -> None:
        self.lives += 1
        self.proc = self.procs.start(
            "serve", "--db", str(self.db), "--port", str(self.port),
            "--api-keys", str(self.keys),
            env={**self.env, "PROJECTOR_GROUP_ID": self.group},
            log_name=f"{self.name}-{self.lives}",
        )  # fmt: skip
        self.wait("its API", lambda: self.http.get("/healthz").status_code == 200, 30)

    def alive(self) -> str | None:
        code = None if self.proc is None else self.proc.poll()
        if code is None:
            return None
        return f"{self.name} exited {code}:\n{tail(self.proc)}"  # type: ignore[arg-type]

    def wait(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        return wait_until(f"{self.name}: {what}", check, timeout, self.alive)

    def wait_applied(self, records: int, timeout: float = 90) -> None:
        def applied() -> bool:
            data = self.http.get("/readyz").json()["data"]
            return watermark_total(data["watermark"]) == records

        self.wait(f"{records} records applied", applied, timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        assert code == (0 if sig == signal.SIGTERM else -sig), tail(self.proc)


async def _produce(bootstrap: str, topics: Topics, events: list[dict[str, Any]]) -> int:
    async with EventEmitter(bootstrap, topics, array_size=6) as em:
        await em.emit_many(events)
        await em.flush()
        return em.records_sent


def _unlike_the_fold(server: Server, events: list[dict[str, Any]]) -> list[str]:
    """Answers of ``server`` that differ from the fold of ``events``, every campaign."""
    state = fold_of(events)
    wrong = []
    for (ws, cid), c in state.campaigns.items():
        runs = state.runs_of((ws, cid))
        want = {
            "status": views.status_payload(cid, views.latest_run(runs)),
            "analytics": views.analytics_payload(cid, c.workspace_id, runs),
        }
        for kind, payload in want.items():
            r = server.http.get(
                f"/v1/campaign/{cid}/{kind}", headers={"X-API-Key": KEYS[c.workspace_id]}
            )
            if r.status_code != 200 or r.json()["data"] != payload:
                wrong.append(f"{server.name}: {kind} of {cid}: {r.status_code} {r.text[:300]}")
    return wrong


def _through_restarts_and_a_swap(
    bootstrap: str,
    topics: Topics,
    procs: Procs,
    tmp: Path,
    *,
    servers: int,
    campaigns: int,
    recipients: int,
    seed: int,
    pollers: int,
) -> Findings:
    rng = random.Random(seed)
    events = hostile_order(list(generate(campaigns, recipients, seed)), rng)
    env = projector_env(
        bootstrap, topics, flush_max_events=150, flush_interval_ms=20, merge_min_events=200,
        rate_limit=0, anon_rate_limit=0,
    )  # fmt: skip
    keys = tmp / "keys.json"
    assert keys_file(keys) == KEYS
    fleet = [Server(procs, env, tmp / f"s{n}.duckdb", keys, f"serve{n}") for n in range(servers)]
    for s in fleet:
        s.start()
    # Campaigns in the order their first event is produced; the pollers poll
    # the ones produced last (about to be committed for the first time).
    first: dict[str, int] = {}
    for i, e in enumerate(events):
        first.setdefault(e["campaign_id"], i)
    targets = [(cid, next(e["workspace_id"] for e in events if e["campaign_id"] == cid))
               for cid in first]  # fmt: skip
    born_at = sorted(first.values())
    mp = multiprocessing.get_context("spawn")
    fed, stop, ready, out = mp.Value("i", 0), mp.Event(), mp.Event(), mp.Queue()
    child = mp.Process(
        target=poll_main,
        args=([s.url for s in fleet], targets, fed, stop, pollers, seed, ready, out),
        daemon=True,
    )
    child.start()
    assert ready.wait(60), "the pollers' process did not start"
    parts = [events[i * len(events) // 5 : (i + 1) * len(events) // 5] for i in range(5)]
    produced = 0

    done = -1  # the last part produced

    def produce(k: int) -> None:
        nonlocal produced, done
        end = sum(len(p) for p in parts[: k + 1])
        fed.value = sum(1 for at in born_at if at < end)
        produced += asyncio.run(_produce(bootstrap, topics, parts[k]))
        done = k

    unlike: list[str] = []

    def everyone_applied() -> None:
        """Wait for a pause in the stream, then compare every answer with the fold."""
        for s in fleet:
            s.wait_applied(produced)
        so_far = events[: sum(len(p) for p in parts[: done + 1])]
        unlike.extend(w for s in fleet for w in _unlike_the_fold(s, so_far))

    try:
        produce(0)
        everyone_applied()
        # The consumer inside fleet[0] restarts twice: a replica joins its group
        # (records arrive while they share the partitions), then leaves it.
        group = fleet[0].group
        fleet[0].wait("a stable group", group_settled(bootstrap, group, 1), 30)
        replica = procs.start(
            "worker", "--db", str(tmp / "replica.duckdb"),
            env={**env, "PROJECTOR_GROUP_ID": group}, log_name="replica",
        )  # fmt: skip
        fleet[0].wait("the replica in the group", group_settled(bootstrap, group, 2), 60)
        produce(1)
        replica.send_signal(signal.SIGTERM)
        assert replica.wait(30) == 0, tail(replica)
        fleet[0].wait("the replica gone", group_settled(bootstrap, group, 1), 60)
        everyone_applied()
        # A clean stop, and a start on the same file (the last server).
        fleet[-1].stop(signal.SIGTERM)
        produce(2)
        fleet[-1].start()
        everyone_applied()
        # A kill while records arrive (the first server), and a start on the same file.
        produce(3)
        fleet[0].stop(signal.SIGKILL)
        fleet[0].start()
        everyone_applied()
        # A swap (the last server) to a database rebuilt from the log, while more arrive.
        swapper = fleet[-1]
        rebuilt = tmp / "rebuilt.duckdb"
        procs.run("replay", "--db", str(rebuilt), env=env, timeout=120, log_name="replay")
        produce(4)
        procs.run(
            "swap", "--url", swapper.url, "--db", str(rebuilt),
            "--admin-key", KEYS["ws_alpha"], env=env, timeout=120, log_name="swap",
        )  # fmt: skip
        swapper.db = rebuilt
        everyone_applied()
    finally:
        stop.set()
    findings: Findings = out.get(timeout=60)
    child.join(10)
    print(
        f"{len(events)} events in {produced} records, {servers} servers, "
        f"{findings.answers} answers ({len(findings.distinct)} distinct, "
        f"{findings.unavailable} refused while restarting)"
    )
    assert unlike == [], "\n".join(unlike[:20])
    assert findings.backwards == [], "\n".join(findings.backwards[:20])
    return findings


def test_a_poller_never_sees_a_status_go_back_through_restarts_and_a_swap(
    bootstrap: str, topics_factory: Callable[..., Topics], procs: Procs, tmp_path: Path
) -> None:
    found = _through_restarts_and_a_swap(
        bootstrap, topics_factory(partitions=4), procs, tmp_path,
        servers=1, campaigns=30, recipients=3, seed=5, pollers=3,
    )  # fmt: skip
    assert found.answers >= 500 and len(found.distinct) >= 100


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_three_servers_polled_through_restarts_and_a_swap(
    bootstrap: str, topics_factory: Callable[..., Topics], procs: Procs, tmp_path: Path, seed: int
) -> None:
    """The issue's setting: three servers on one small machine, one stream, one client
    polling them all."""
    found = _through_restarts_and_a_swap(
        bootstrap, topics_factory(partitions=8), procs, tmp_path,
        servers=3, campaigns=120, recipients=5, seed=seed, pollers=6,
    )  # fmt: skip
    assert found.answers >= 2000


pytestmark = pytest.mark.timeout(600)
