"""Failover time: SIGKILL a node of a group; time until a survivor answers a moved campaign exactly.

Issue 28's last benchmark. An embedded broker, topics of ``--partitions``
partitions, ``--events-per-partition`` simulated events on each (100-event
array records; campaigns placed by the contract's murmur2 partitioner,
several per partition), then ``--nodes`` ``projector serve`` processes of one
group with ``--advertise``. Once every node is settled and has applied every
partition it owns up to the log end, each partition's probe campaign (the one
whose run reaches furthest into the partition) is asked for its status: that
answer is the expected one.

A trial SIGKILLs the longest-running node, then polls a survivor every
``--poll-ms`` for each moved partition's probe until the answer equals the
expected one: kill -> first correct answer, per moved partition. It also
notes when the survivor first owned the moved partitions (the session
timeout and the rebalance) and whether it had to restore them. The killed
node then restarts and the harness waits for the group to settle again.

``--path`` says where a gained partition's projections come from:

- ``rebuild``: every node its own data (``--data-dir`` per node where serve
  has it, else ``--db``), and every restarted node starts empty: a gained
  partition is read again from Kafka, all of it, in every trial (that is why
  the longest-running node is the one killed: the survivor never held the
  partitions it gains).
- ``shared``: every node ``--data-dir`` on one directory; a gained partition's
  file is reopened. Needs a serve with ``--data-dir``.

Progress goes to stderr; the figures (p50/p99 over trials x moved partitions)
to stdout and ``bench/results/failover.json``.

    .venv/bin/python -m bench.failover --path rebuild [--events-per-partition 250000]
        [--partitions 4] [--nodes 2] [--trials 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import common
from projector.settings import Topics
from projector.tools.broker import free_port


class FailoverError(RuntimeError):
    """The failover did not complete: no correct answer, a node died, the group never settled."""


def say(message: str) -> None:
    print(f"[failover {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the events ------------------------------------------------------------------


@dataclass
class Probe:
    """The campaign asked for in a partition, and what the answer must be."""

    partition: int
    campaign_id: str
    workspace_id: str
    expected: dict[str, Any] | None = None


@dataclass
class Load:
    """Simulated events cut to ``per_partition`` on each partition; the probes it found.

    Waves of the simulator (one seed each) are read in order; an event goes
    to its campaign's partition until that partition holds ``per_partition``
    events, so the last campaign of a partition may be cut part-way through
    (a prefix of a valid stream is valid).
    """

    partitions: int
    per_partition: int
    seed: int = 28
    counts: list[int] = field(default_factory=list)
    # partition -> campaign -> (workspace, index of its last event, has a run)
    _last: dict[int, dict[str, tuple[str, int, bool]]] = field(default_factory=dict)

    def events(self) -> Iterator[dict[str, Any]]:
        from projector.tools.simulate import generate
        from schemas.partitioner import partition_of

        self.counts = [0] * self.partitions
        self._last = {p: {} for p in range(self.partitions)}
        # Five to ten campaigns (one to three runs each) fill a partition.
        recipients = max(20, self.per_partition // 25)
        where: dict[str, int] = {}
        n = 0
        for wave in range(10_000):
            for event in generate(2 * self.partitions, recipients, self.seed + wave):
                cid = event["campaign_id"]
                p = where.get(cid)
                if p is None:
                    p = where[cid] = partition_of(cid, self.partitions)
                if self.counts[p] >= self.per_partition:
                    continue
                self.counts[p] += 1
                _, _, had_run = self._last[p].get(cid, ("", 0, False))
                self._last[p][cid] = (event["workspace_id"], n, had_run or "run_id" in event)
                n += 1
                yield event
                if min(self.counts) >= self.per_partition:
                    return
        raise FailoverError("the simulator ran out of waves")  # pragma: no cover

    def probes(self) -> list[Probe]:
        """Per partition, the campaign with a run whose last event came latest."""
        out = []
        for p, campaigns in sorted(self._last.items()):
            with_run = [(i, cid, ws) for cid, (ws, i, run) in campaigns.items() if run]
            if not with_run:
                raise FailoverError(f"partition {p} has no campaign with a run; "
                                    "use more events per partition")
            _, cid, ws = max(with_run)
            out.append(Probe(p, cid, ws))
        return out


def counted(events: Iterable[dict[str, Any]], total: int, every: int) -> Iterator[dict[str, Any]]:
    """Pass ``events`` through, saying on stderr how many have gone."""
    t0 = time.monotonic()
    for n, event in enumerate(events, 1):
        yield event
        if n % every == 0:
            rate = n / max(time.monotonic() - t0, 1e-9)
            say(f"produced {n:,} / {total:,} events ({rate:,.0f}/s)")


# -- the nodes -------------------------------------------------------------------


def serve_has_data_dir() -> bool:
    """Whether this build's ``projector serve`` takes ``--data-dir``."""
    out = subprocess.run([sys.executable, "-m", "service", "serve", "--help"],
                         env=common.repo_env(), capture_output=True, text=True, timeout=60)
    return "--data-dir" in out.stdout


class Node:
    """One ``projector serve`` of the group; restarts on the same port (same URL)."""

    def __init__(self, name: str, work: Path, env: dict[str, str], keys: Path) -> None:
        self.name, self.work, self.env, self.keys = name, work, env, keys
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0
        self.started_at = 0.0

    def start(self, storage: list[str]) -> None:
        self.started += 1
        self.started_at = time.monotonic()
        self.proc = common.start_child(
            ["-m", "service", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--api-keys", str(self.keys), "--advertise", self.url, *storage],
            self.env, self.work, f"{self.name}-{self.started}")

    def died(self) -> str | None:
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"{self.name} exited {self.proc.returncode}:\n{common.tail(self.proc)}"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None:
            common.stop_child(self.proc)


def storage_for(path: str, data_dir: bool, work: Path, node: Node) -> list[str]:
    """``serve``'s storage options for ``node``'s next start on ``path``."""
    if path == "shared":
        return ["--data-dir", str(work / "shared")]
    # Rebuild: a fresh place per start, so a node never holds a partition it
    # is about to gain (module docstring).
    own = work / f"{node.name}-{node.started + 1}"
    return ["--data-dir", str(own)] if data_dir else ["--db", f"{own}.duckdb"]


def parse_watermark(text: str) -> dict[tuple[str, int], int]:
    return common.parse_watermark(text or "")


def owned_if_caught_up(
    http: httpx.Client, node: Node, ends: dict[tuple[str, int], int], sources: list[str]
) -> tuple[frozenset[int] | None, str]:
    """The partitions ``node`` owns when it is settled, restores nothing and has
    applied each of them up to the log end; else None and why not."""
    try:
        body = http.get(node.url + "/readyz").json()["data"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
        return None, f"{node.name}: no readiness ({type(e).__name__})"
    cluster = body.get("cluster") or {}
    if not cluster.get("settled"):
        return None, f"{node.name}: not settled"
    owned = frozenset(cluster.get("owned") or [])
    if cluster.get("restoring"):
        return None, f"{node.name}: restoring {cluster['restoring']}"
    applied = parse_watermark(body.get("watermark", ""))
    behind = sum(max(0, ends.get((t, p), 0) - applied.get((t, p), 0))
                 for t in sources for p in owned)
    if behind:
        return None, f"{node.name}: owns {sorted(owned)}, {behind:,} records behind"
    return owned, f"{node.name}: owns {sorted(owned)}"


def commits_behind(bootstrap: str, group: str, ends: dict[tuple[str, int], int]) -> int:
    """Records between the group's committed offsets and the log ends."""
    import asyncio

    from projector.intake.offsets import committed_offsets

    committed = asyncio.run(committed_offsets(bootstrap, group, list(ends)))
    return sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items())


def wait_settled(
    http: httpx.Client, nodes: list[Node], ends: dict[tuple[str, int], int],
    sources: list[str], partitions: int, timeout: float, what: str, bootstrap: str, group: str,
) -> dict[str, frozenset[int]]:
    """Wait until every node owns a share, the shares cover every partition once,
    every node has applied its share to the log end and the group has committed
    it: node name -> partitions. (A node killed before it commits leaves its
    successor nothing to restore up to: the steady state is the committed one.)"""
    t0 = time.monotonic()
    last_said = t0
    why: list[str] = []
    claimed_twice_since: float | None = None
    while True:
        for node in nodes:
            if (dead := node.died()) is not None:
                raise FailoverError(f"while waiting for {what}: {dead}")
        shares: dict[str, frozenset[int]] = {}
        why = []
        for node in nodes:
            owned, reason = owned_if_caught_up(http, node, ends, sources)
            why.append(reason)
            if owned:
                shares[node.name] = owned
        twice = sorted({p for a in shares for b in shares if a < b
                        for p in shares[a] & shares[b]})
        claimed_twice_since = (claimed_twice_since or time.monotonic()) if twice else None
        if claimed_twice_since is not None and time.monotonic() - claimed_twice_since > 60:
            # Seen once: a node whose faust fetcher crashed (aiokafka KeyError in
            # a rebalance) stopped consuming but still answered as the owner.
            raise FailoverError(f"{what}: partitions {twice} claimed by two settled nodes "
                                f"for over 60 s: {'; '.join(why)}")
        if len(shares) == len(nodes):
            every = sorted(p for s in shares.values() for p in s)
            if every != list(range(partitions)):
                why.append(f"shares {sorted(map(sorted, shares.values()))} do not cover once")
            elif behind := commits_behind(bootstrap, group, ends):
                why.append(f"the group's commits are {behind:,} records behind")
            else:
                say(f"{what}: settled after {time.monotonic() - t0:.1f} s ({'; '.join(why)})")
                return shares
        now = time.monotonic()
        if now - t0 > timeout:
            raise FailoverError(f"{what}: not settled within {timeout:.0f} s: {'; '.join(why)}")
        if now - last_said >= 5:
            last_said = now
            say(f"waiting for {what} ({now - t0:.0f} s): {'; '.join(why)}")
        time.sleep(0.25)


# -- one failover ----------------------------------------------------------------


@dataclass
class Seen:
    """What a survivor answered for the moved campaigns while they moved."""

    first_correct: dict[int, float] = field(default_factory=dict)  # partition -> s after kill
    owned_at: float | None = None  # the survivor's /readyz first listed them all as owned
    restored: bool = False  # ... and listed one of them as restoring (503 until caught up)
    codes: dict[str, int] = field(default_factory=dict)
    wrong: int = 0  # 200s whose data was not the expected answer


def await_correct(
    http: httpx.Client, url: str, probes: list[Probe], keys: dict[str, str], killed_at: float,
    timeout: float, every: float = 0.02, alive: Callable[[], str | None] = lambda: None,
) -> Seen:
    """Ask ``url`` for each probe's status every ``every`` s until each answer is the
    expected one; seconds from ``killed_at`` to each first correct answer.

    Raises ``FailoverError`` when ``timeout`` passes first (with the status
    codes seen), or as soon as ``alive()`` returns why the node died.
    """
    seen = Seen()
    pending = {p.partition: p for p in probes}
    moved = {p.partition for p in probes}
    rounds = 0
    while pending:
        t = time.monotonic()
        if t - killed_at > timeout:
            raise FailoverError(
                f"no correct answer from {url} for partitions {sorted(pending)} within "
                f"{timeout:.0f} s of the kill; answers seen {seen.codes}, wrong 200s {seen.wrong}")
        if (dead := alive()) is not None:
            raise FailoverError(f"a survivor died during the failover: {dead}")
        for p, probe in list(pending.items()):
            try:
                r = http.get(f"{url}/v1/campaign/{probe.campaign_id}/status",
                             headers={"X-API-Key": keys[probe.workspace_id]})
            except httpx.HTTPError as e:
                code = type(e).__name__
            else:
                code = str(r.status_code)
                if r.status_code == 200:
                    if r.json().get("data") == probe.expected:
                        seen.first_correct[p] = time.monotonic() - killed_at
                        del pending[p]
                    else:
                        seen.wrong += 1
            seen.codes[code] = seen.codes.get(code, 0) + 1
        # Readiness every round until the survivor owns the moved partitions
        # (when they moved is the split), then every fifth: each request takes
        # the survivor's CPU from the restore being timed.
        if seen.owned_at is None or rounds % 5 == 0:
            try:
                cluster = http.get(url + "/readyz").json()["data"].get("cluster") or {}
            except (httpx.HTTPError, ValueError, KeyError, AttributeError):
                cluster = {}
            if seen.owned_at is None and moved <= set(cluster.get("owned") or []):
                seen.owned_at = time.monotonic() - killed_at
            seen.restored |= bool(moved & set(cluster.get("restoring") or []))
        rounds += 1
        time.sleep(max(0.0, every - (time.monotonic() - t)))
    return seen


# -- the run ---------------------------------------------------------------------


@dataclass
class Options:
    path: str = "rebuild"
    partitions: int = 4
    events_per_partition: int = 250_000
    nodes: int = 2
    trials: int = 5
    poll_ms: int = 20
    array_size: int = 100
    timeout: float = 600.0
    keep: bool = False


def summary_s(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    return {"count": len(values),
            "p50_s": round(common.percentile(values, 50), 2),
            "p99_s": round(common.percentile(values, 99), 2),
            "min_s": round(min(values), 2), "max_s": round(max(values), 2)}


def run(opts: Options) -> dict[str, Any]:
    """One benchmark run; the figures (raises ``FailoverError`` when a failover fails)."""
    if opts.path not in ("rebuild", "shared"):
        raise ValueError(f"--path must be rebuild or shared, not {opts.path!r}")
    if opts.nodes < 2 or opts.partitions < opts.nodes:
        raise ValueError("need at least two nodes and a partition per node")
    data_dir = serve_has_data_dir()
    if opts.path == "shared" and not data_dir:
        raise FailoverError("--path shared needs `projector serve --data-dir`, "
                            "which this build does not have")
    began = time.monotonic()
    work = common.workdir("failover")
    nodes: list[Node] = []
    trials: list[dict[str, Any]] = []
    catch_up_s: float | None = None

    def figures() -> dict[str, Any]:
        samples = [s for t in trials for s in t["first_correct_s"].values()]
        return {
            "path": opts.path,
            "storage": storage,
            "partitions": opts.partitions,
            "nodes": opts.nodes,
            "events_per_partition": opts.events_per_partition,
            "events_per_partition_produced": load.counts,
            "array_size": opts.array_size,
            "poll_ms": opts.poll_ms,
            "produce": produced,
            "first_catch_up_s": None if catch_up_s is None else round(catch_up_s, 1),
            "trials": trials,
            "first_correct": summary_s(samples),
            "survivor_owned": summary_s([t["survivor_owned_s"] for t in trials
                                         if t["survivor_owned_s"] is not None]),
            "wrong_answers": sum(t["wrong_answers"] for t in trials),
            "unexpected_answers": sum(t["unexpected_answers"] for t in trials),
            "run_seconds": round(time.monotonic() - began, 1),
        }

    with common.broker() as b, httpx.Client(timeout=5) as http:
        topics: Topics = common.fresh_topics()
        sources = [topics.runs, topics.batches, topics.submits, topics.dlrs]
        common.create_topics(b.bootstrap, topics, opts.partitions)
        load = Load(opts.partitions, opts.events_per_partition)
        total = opts.partitions * opts.events_per_partition
        say(f"producing {total:,} events ({opts.events_per_partition:,} on each of "
            f"{opts.partitions} partitions, {opts.array_size}-event records)")
        produced = common.preproduce(
            b.bootstrap, topics, counted(load.events(), total, max(total // 10, 1000)),
            array_size=opts.array_size)
        say(f"produced {produced['events']:,} events in {produced['records']:,} records, "
            f"{produced['produce_seconds']} s")
        probes = load.probes()
        ends = common.log_ends(b.bootstrap, sources)

        keys_by_ws = common.write_keys(work / "keys.json")
        keys = {ws: ks[0] for ws, ks in keys_by_ws.items()}
        # No rate limit: the poller asks every 20 ms, far more than a client may.
        group = f"bench-failover-{uuid.uuid4().hex[:8]}"
        env = common.child_env(b.bootstrap, topics, rate_limit=0, log_level="INFO",
                               group_id=group)
        nodes = [Node(f"node{i}", work, env, work / "keys.json") for i in range(opts.nodes)]
        storage = "--data-dir" if data_dir else "--db"
        try:
            for node in nodes:
                node.start(storage_for(opts.path, data_dir, work, node))
            say(f"{opts.nodes} nodes started ({opts.path} path, {storage}); waiting for them "
                f"to settle and apply {total:,} events")
            t = time.monotonic()
            shares = wait_settled(http, nodes, ends, sources, opts.partitions, opts.timeout,
                                  "the first catch-up", b.bootstrap, group)
            catch_up_s = time.monotonic() - t
            for probe in probes:
                r = http.get(f"{nodes[0].url}/v1/campaign/{probe.campaign_id}/status",
                             headers={"X-API-Key": keys[probe.workspace_id]})
                if r.status_code != 200:
                    raise FailoverError(f"probe {probe.campaign_id} answers {r.status_code} "
                                        f"before any kill: {r.text[:300]}")
                probe.expected = r.json()["data"]
            for trial in range(1, opts.trials + 1):
                victim = min(nodes, key=lambda n: n.started_at)
                survivors = [n for n in nodes if n is not victim]
                moved = [p for p in probes if p.partition in shares[victim.name]]
                say(f"trial {trial}/{opts.trials}: SIGKILL {victim.name} "
                    f"(partitions {sorted(shares[victim.name])})")
                killed_at = time.monotonic()
                victim.kill()
                seen = await_correct(
                    http, survivors[0].url, moved, keys, killed_at, opts.timeout,
                    opts.poll_ms / 1000,
                    alive=lambda left=survivors: next((d for n in left if (d := n.died())), None))
                times = ", ".join(f"p{p} {s:.1f} s" for p, s in sorted(seen.first_correct.items()))
                owned = "never seen" if seen.owned_at is None else f"{seen.owned_at:.1f} s"
                say(f"trial {trial}: first correct answer {times}; survivor owned them at "
                    f"{owned}{' (restored)' if seen.restored else ''}; answers {seen.codes}")
                trials.append({
                    "victim": victim.name,
                    # Neighbours share the machine: their load moves the figures.
                    "loadavg_1m_after": round(os.getloadavg()[0], 2),
                    "moved_partitions": sorted(seen.first_correct),
                    "first_correct_s": {str(p): round(s, 3)
                                        for p, s in sorted(seen.first_correct.items())},
                    "survivor_owned_s": None if seen.owned_at is None else round(seen.owned_at, 3),
                    "restored": seen.restored,
                    "answers": seen.codes,
                    "wrong_answers": seen.wrong,
                    # Neither the answer, a 200 in the making, nor "wait" (503):
                    # e.g. a 404 from a node that answers before it has the partition.
                    "unexpected_answers": sum(n for c, n in seen.codes.items()
                                              if c not in ("200", "503")),
                })
                victim.start(storage_for(opts.path, data_dir, work, victim))
                shares = wait_settled(http, nodes, ends, sources, opts.partitions, opts.timeout,
                                      f"{victim.name} back after trial {trial}",
                                      b.bootstrap, group)
            for probe in probes:
                for node in nodes:
                    r = http.get(f"{node.url}/v1/campaign/{probe.campaign_id}/status",
                                 headers={"X-API-Key": keys[probe.workspace_id]})
                    if r.status_code != 200 or r.json()["data"] != probe.expected:
                        raise FailoverError(f"{node.name} ends with a different answer for "
                                            f"{probe.campaign_id}: {r.status_code}")
        except FailoverError as e:
            # The trials before the failure are figures all the same: kept with the error.
            partial = {**figures(), "complete": False, "error": str(e)[:3000]}
            e.partial = partial if trials else None  # type: ignore[attr-defined]
            raise
        finally:
            for node in nodes:
                node.stop()
    return {**figures(), "complete": True}

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", choices=["rebuild", "shared"], default="rebuild")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--events-per-partition", type=int, default=250_000)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--poll-ms", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds a failover or a settle may take before the run fails")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args()
    opts = Options(path=args.path, partitions=args.partitions,
                   events_per_partition=args.events_per_partition, nodes=args.nodes,
                   trials=args.trials, poll_ms=args.poll_ms, timeout=args.timeout,
                   keep=args.keep)
    failed = True
    try:
        figures = run(opts)
        failed = False
    except FailoverError as e:
        partial = getattr(e, "partial", None)
        if partial:
            print(f"partial results ({len(partial['trials'])} trials) appended to "
                  f"{common.save_result('failover', partial)}")
        raise SystemExit(f"failover: {e}") from None
    finally:
        common.tidy(failed=failed, keep=opts.keep)
    s = figures["first_correct"]
    note = " (p99 of so few is the max)" if s["count"] < 100 else ""
    print(f"failover, {opts.path} path ({figures['storage']}), {opts.events_per_partition:,} "
          f"events per partition, {s['count']} moved partitions over {opts.trials} trials: "
          f"SIGKILL -> first correct answer p50 {s['p50_s']} s, p99 {s['p99_s']} s{note}; "
          f"survivor owned the partitions p50 {figures['survivor_owned'].get('p50_s')} s; "
          f"answers other than 200 or 503: {figures['unexpected_answers']}; "
          f"200s with another answer: {figures['wrong_answers']}; run {figures['run_seconds']} s")
    print(f"results appended to {common.save_result('failover', figures)}")


if __name__ == "__main__":
    main()
