"""Pollers of status and analytics, run in a process of their own as real clients are.

Clients live outside the server process: in it they would compete for its GIL
and slow everything they observe. Only ``httpx`` and ``orjson`` are imported
here, so a spawned child starts quickly. Each thread checks its own sequence
of answers as it goes (a poller is one client: one request after another);
every distinct answer goes back to the parent, which compares it with what
the database held at the answer's position.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

WORKSPACES = ("ws_alpha", "ws_beta", "ws_gamma")  # projector.tools.simulate.WORKSPACES
# As tests.fixtures.processes.keys_file writes them: one all-scopes key per workspace.
KEYS = {ws: f"test-key-{ws}" for ws in WORKSPACES}
# F3: scheduled < claimed (shown as running) < terminal.
RANK = {"scheduled": 0, "running": 1, "completed": 2, "failed": 2, "cancelled": 2}


def position_of(etag: str) -> int:
    """The campaign position in one of our ETags (``W/"<position>-<digest>"``)."""
    return int(etag.removeprefix('W/"').split("-", 1)[0])


@dataclass
class Findings:
    """What the pollers saw."""

    answers: int = 0
    unavailable: int = 0  # connection refused or reset while a server restarted
    # Distinct (kind, campaign, position, payload JSON) answered with 200.
    distinct: set[tuple[str, str, int, bytes]] = field(default_factory=set)
    backwards: list[str] = field(default_factory=list)

    def add(self, other: Findings) -> None:
        self.answers += other.answers
        self.unavailable += other.unavailable
        self.distinct |= other.distinct
        self.backwards.extend(other.backwards)


class Client:
    """One poller's view: what it was answered so far, and what would be a step back."""

    def __init__(self) -> None:
        self.found = Findings()
        self.answered: set[str] = set()
        self.had_run: set[str] = set()
        self.rank: dict[str, int] = {}

    def check(self, kind: str, cid: str, r: httpx.Response) -> None:
        f = self.found
        f.answers += 1
        if r.status_code == 404:
            if cid in self.answered:
                f.backwards.append(f"{cid}: 404 after it was answered")
            return
        if r.status_code != 200:
            f.backwards.append(f"{kind} of {cid}: {r.status_code} {r.text[:200]}")
            return
        self.answered.add(cid)
        data = r.json()["data"]
        run = data.get("campaign_run_id")
        if run is None and cid in self.had_run:
            f.backwards.append(f"{kind} of {cid}: no run after one was shown")
        if run is not None:
            self.had_run.add(cid)
        if kind == "status" and run is not None:
            rank = RANK[data["status"]]
            if rank < self.rank.get(run, -1):
                f.backwards.append(f"run {run} of {cid} moved back to {data['status']}")
            self.rank[run] = max(rank, self.rank.get(run, -1))
        f.distinct.add((kind, cid, position_of(r.headers["ETag"]), orjson.dumps(data)))


def _poll(
    urls: list[str],
    targets: list[tuple[str, str]],
    fed: Any,
    stop: Any,
    seed: int,
    clients: list[Client],
) -> None:
    """One poller thread: one request after another, to a server chosen at random;
    ``clients[i]`` is its view of ``urls[i]`` (answers only compare within a server)."""
    rng = random.Random(seed)
    with httpx.Client(timeout=10) as http:
        while not stop.is_set():
            n = min(fed.value, len(targets))
            if n == 0:
                time.sleep(0.001)
                continue
            # Mostly the campaigns fed last, whose first flush is about to commit.
            if rng.random() < 0.75:
                cid, ws = targets[n - 1 - min(int(rng.expovariate(0.4)), n - 1)]
            else:
                cid, ws = targets[rng.randrange(n)]
            kind = "status" if rng.random() < 0.8 else "analytics"
            server = rng.randrange(len(urls))
            client = clients[server]
            try:
                r = http.get(
                    f"{urls[server]}/v1/campaign/{cid}/{kind}", headers={"X-API-Key": KEYS[ws]}
                )
            except httpx.TransportError:  # a server restarting
                client.found.unavailable += 1
                time.sleep(0.005)
                continue
            client.check(kind, cid, r)


def poll_main(
    urls: list[str],
    targets: list[tuple[str, str]],
    fed: Any,
    stop: Any,
    threads: int,
    seed: int,
    ready: Any,
    out: Any,
) -> None:
    """Child process: ``threads`` pollers of ``urls`` over the first ``fed.value`` of
    ``targets`` (campaign, workspace) until ``stop`` is set; sets ``ready`` once they
    run and puts the merged ``Findings`` on ``out``."""
    clients = [[Client() for _ in urls] for _ in range(threads)]
    workers = [
        threading.Thread(target=_poll, args=(urls, targets, fed, stop, seed * 100 + n, c))
        for n, c in enumerate(clients)
    ]
    for w in workers:
        w.start()
    ready.set()
    for w in workers:
        w.join()
    found = Findings()
    for per_server in clients:
        for c in per_server:
            found.add(c.found)
    out.put(found)
