"""What a store per partition costs the writer: ``Store.flush`` alone, no Kafka.

Issue 28 puts partition p's projections and offsets in a store of its own, each
flush committing every touched store in that store's own transaction. This
folds the simulator's events, as the consumer hands them over (fast path,
canonical JSON), through ``Store.flush`` in one of three layouts:

* ``one``: one file, as today (offsets of ``--partitions`` partitions);
* ``files:N``: N files, one per partition, each its own DuckDB connection
  (so its own DuckDB instance: buffer pool, memory limit, thread pool);
* ``attach:N``: the same N files ATTACHed to one connection (one DuckDB
  instance, one memory limit); a flush still commits each file in a
  transaction of its own (``USE`` switches the store written to).

Events go to partitions as the contract's producers put them: murmur2 of the
``campaign_id`` key, modulo N (aiokafka's ``DefaultPartitioner``, which the
SDK uses). Each event counts as a single-event record of its topic's
partition, so each store receives the next offsets of its own partitions only.
A flush writes the touched stores one after the other, in one thread, as the
live writer would. Routing is done before the clock starts: live, a record's
partition comes with it.

Budget: the live writer's settings (``Settings()``) are the node's total;
``--budget split`` (default) gives each of N stores 1/N of the DuckDB memory
limit and of the row cache (``cache_max_rows``), ``--budget full`` gives every
store all of it (what N times the memory would look like). DuckDB threads stay
at the live setting per store; ``attach`` has one instance and one limit.

Large flushes: a store merges in SQL when its own share reaches
``merge_min_events`` (default: ``Store.flush`` unchanged) or, with ``:whole``
on a variant, every share does when the whole flush reaches it (the bench sets
the stores' threshold per flush).

Scenarios (``--batch``): per flush size, ``--history`` events folded untimed in
5,000-event flushes, then the timed flushes. Live sizes (below 10,000) time
``--live-events`` events; catch-up sizes time ``--catchup-events``. Each run
is a child process (its own peak RSS), variants interleaved per repeat. After
a live run the child exits without closing (as after a kill) and another child
times reopening every store and one store alone (WAL replay).

``python -m bench.shard_cost [--batch 200 20000 100000] [--variants one files:4 ...]
[--repeat 2] [--campaigns 20 --recipients 3000]``; figures in
docs/benchmarks.md#shard_cost, appended to ``bench/results/shard_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson
from aiokafka.partitioner import murmur2

from bench import common
from projector.settings import Settings
from projector.store.writer import Store, live_store
from schemas import EVENT_ADAPTER
from schemas.fastdecode import fast_events
from schemas.topics import TOPIC_KIND_OF_TYPE

NAME = "shard_cost"
HISTORY_BATCH = 5000
DEFAULT_VARIANTS = ["one", "files:4", "files:16", "files:64", "attach:16", "attach:64"]

TopicPartition = tuple[str, int]


# -- events and routing ----------------------------------------------------------


def partition_of(campaign_id: str, partitions: int, _cache: dict[tuple[str, int], int] = {}) -> int:  # noqa: B006
    """The contract's partitioner: murmur2 of the key, made positive, modulo the count."""
    key = (campaign_id, partitions)
    p = _cache.get(key)
    if p is None:
        p = _cache[key] = (murmur2(campaign_id.encode()) & 0x7FFFFFFF) % partitions
    return p


def consumed(n: int, campaigns: int, recipients: int) -> list[Any]:
    """The first ``n`` simulated events as the consumer hands them to the writer."""
    out: list[Any] = []
    for e in common.sim_events(n, campaigns=campaigns, recipients=recipients):
        fast = fast_events(orjson.dumps(e))
        out.extend(fast[0] if fast is not None else [EVENT_ADAPTER.validate_python(e)])
    return out


@dataclass
class Part:
    """One store's share of a flush: its events and its partitions' next offsets."""

    events: list[Any]
    offsets: dict[TopicPartition, int]


def route(events: list[Any], batch: int, partitions: int, shards: int,
          next_offset: dict[TopicPartition, int]) -> list[dict[int, Part]]:
    """Flushes of ``batch`` events, each split by store (store = partition when sharded).

    ``partitions`` is the topics' partition count; with one store every
    partition's offsets go to store 0.
    """
    flushes: list[dict[int, Part]] = []
    for i in range(0, len(events), batch):
        parts: dict[int, Part] = {}
        for ev in events[i:i + batch]:
            p = partition_of(ev.campaign_id, partitions)
            tp = (TOPIC_KIND_OF_TYPE[ev.type], p)
            next_offset[tp] = next_offset.get(tp, 0) + 1
            part = parts.setdefault(p if shards > 1 else 0, Part([], {}))
            part.events.append(ev)
            part.offsets[tp] = next_offset[tp]
        flushes.append(dict(sorted(parts.items())))
    return flushes


# -- the layouts -----------------------------------------------------------------


def _bytes(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    t = text.strip().upper()
    for unit, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if t.endswith(unit):
            return int(float(t[: -len(unit)]) * factor)
    return int(t)


class Layout:
    """N stores (N = 1 for ``one``), opened with the node's budget split or not."""

    def __init__(self, kind: str, shards: int, work: Path, budget: str,
                 min_memory_mib: int = 128) -> None:
        self.kind, self.shards, self.work = kind, shards, work
        settings = Settings()
        split = budget == "split" and kind != "one"
        # A file's own instance needs room for its merges and indexes whatever
        # its share: at 2GB / 64 (29 MiB) a merge ran out of memory.
        share = max(_bytes(settings.duckdb_memory_limit) // shards, min_memory_mib * 2**20)
        self.memory_limit = (
            f"{share // 2**20}MiB" if split and kind == "files" else settings.duckdb_memory_limit
        )
        self.cache_max_rows = (
            settings.cache_max_rows // shards if split else settings.cache_max_rows
        )
        self.stores: list[Store] = []
        for k in range(shards):
            store = live_store(settings, self.path(k))
            store.memory_limit = self.memory_limit
            store.cache_max_rows = self.cache_max_rows
            self.stores.append(store)
        self.shared: duckdb.DuckDBPyConnection | None = None

    def path(self, k: int) -> Path:
        return self.work / f"p{k}.duckdb"

    def open(self) -> float:
        t0 = time.perf_counter()
        for store in self.stores:
            store.open()
        if self.kind == "attach":
            # Each file was created with its tables by its own Store.open; now
            # one instance holds them all. The stores keep their memory (row
            # cache, committed heads) and write through the shared connection.
            for store in self.stores:
                store.close()
            settings = Settings()
            self.shared = duckdb.connect(":memory:", config={
                "memory_limit": settings.duckdb_memory_limit,
                "checkpoint_threshold": settings.duckdb_checkpoint_threshold,
            })
            self.shared.execute(f"SET threads = {settings.duckdb_threads}")
            for k, store in enumerate(self.stores):
                self.shared.execute(f"ATTACH '{self.path(k)}' AS s{k}")
                store._con = self.shared  # noqa: SLF001 - measurement only
        return time.perf_counter() - t0

    def flush(self, parts: dict[int, Part], merge_min: int) -> None:
        """Each touched store's share in its own transaction; ``merge_min`` >= 0
        overrides the stores' merge threshold for this flush."""
        for k, part in parts.items():
            store = self.stores[k]
            if merge_min >= 0:
                store.merge_min_events = merge_min
            if self.shared is not None:
                self.shared.execute(f"USE s{k}")
            store.flush(part.events, part.offsets)

    def cache_misses(self) -> int:
        return sum(s._prior.cache.misses for s in self.stores)  # noqa: SLF001

    def close(self) -> None:
        if self.shared is not None:
            for k, store in enumerate(self.stores):
                self.shared.execute(f"CHECKPOINT s{k}")
                store._con = None  # noqa: SLF001
            self.shared.close()
        else:
            for store in self.stores:
                store.close()

    def sizes(self) -> dict[str, Any]:
        files = [p for p in self.work.iterdir() if p.name.endswith((".duckdb", ".wal"))]
        sizes = sorted(p.stat().st_size for p in files if p.name.endswith(".duckdb"))
        wal = sum(p.stat().st_size for p in files if p.name.endswith(".wal"))
        return {"files": len(sizes), "mb_total": round(sum(sizes) / 1e6, 1),
                "mb_min": round(sizes[0] / 1e6, 2), "mb_max": round(sizes[-1] / 1e6, 2),
                "wal_mb": round(wal / 1e6, 1)}


def parse_variant(spec: str) -> tuple[str, int, bool]:
    """``one`` | ``files:N`` | ``attach:N``, optionally ``:whole``; (kind, N, whole)."""
    parts = spec.split(":")
    kind = parts[0]
    shards = int(parts[1]) if len(parts) > 1 else 1
    if kind not in ("one", "files", "attach") or (kind == "one") != (shards == 1):
        raise SystemExit(f"bad variant {spec!r}: one, files:N or attach:N (N > 1)")
    return kind, shards, parts[-1] == "whole"


# -- one run (a child process) -----------------------------------------------------


def rss_mb() -> tuple[float, float]:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    now = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            now = int(line.split()[1]) / 1024
    return round(peak, 1), round(now, 1)


def child_run(job: dict[str, Any]) -> dict[str, Any]:
    kind, shards, whole_flush = parse_variant(job["variant"])
    work = Path(job["work"])
    with open(job["events"], "rb") as f:
        events = pickle.load(f)
    history, timed = events[: job["history"]], events[job["history"]:]
    batch = job["batch"]
    partitions = shards if shards > 1 else job["partitions"]
    offsets: dict[TopicPartition, int] = {}
    hist_flushes = route(history, HISTORY_BATCH, partitions, shards, offsets)
    flushes = route(timed, batch, partitions, shards, offsets)
    merge_min = Settings().merge_min_events

    def policy(size: int) -> int:
        """The shards' merge threshold for a flush of ``size`` events (-1: as configured)."""
        return 1 if whole_flush and size >= merge_min else (0 if whole_flush else -1)

    _, base = rss_mb()
    layout = Layout(kind, shards, work, job["budget"], job["min_memory_mib"])
    open_s = layout.open()
    for parts in hist_flushes:
        layout.flush(parts, policy(HISTORY_BATCH))
    merging = policy(batch)
    walls: list[float] = []
    misses0 = layout.cache_misses()
    t0, cpu0 = time.perf_counter(), time.process_time()
    for parts in flushes:
        f0 = time.perf_counter()
        layout.flush(parts, merging)
        walls.append(time.perf_counter() - f0)
    total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak, now = rss_mb()
    # The floor of a touched store's cost: a commit of offsets alone, no rows.
    commits: list[float] = []
    for i in range(60):
        k = i % shards
        f0 = time.perf_counter()
        layout.flush({k: Part([], {("probe", k): i + 1})}, -1)
        commits.append(time.perf_counter() - f0)
    result = {
        "variant": job["variant"], "layout": kind, "shards": shards, "batch": batch,
        "merge": "whole" if whole_flush else "own share",
        "budget": job["budget"], "memory_limit_per_store": layout.memory_limit,
        "cache_max_rows_per_store": layout.cache_max_rows,
        "history_events": len(history), "events": len(timed), "flushes": len(flushes),
        "stores_touched_per_flush": round(sum(map(len, flushes)) / len(flushes), 1),
        "open_s": round(open_s, 3),
        "flush_wall": common.summary_ms(walls),
        "events_per_s": round(len(timed) / total),
        "events_per_cpu_s": round(len(timed) / cpu) if cpu else None,
        "cache_misses": layout.cache_misses() - misses0,
        "empty_commit": common.summary_ms(commits),
        "rss_peak_mb": peak, "rss_stores_mb": round(now - base, 1),
    }
    if job.get("crash"):
        # As after a kill: no close, no checkpoint; the WAL stays for the reopen.
        result["sizes_at_kill"] = layout.sizes()
        print(json.dumps(result), flush=True)
        os._exit(0)
    layout.close()
    result["sizes"] = layout.sizes()
    return result


def child_reopen(job: dict[str, Any]) -> dict[str, Any]:
    """Reopen after a kill: one store alone (on a copy), then all of them."""
    kind, shards, _ = parse_variant(job["variant"])
    work = Path(job["work"])
    alone = work / "alone"
    alone.mkdir()
    biggest = max((p for p in work.glob("p*.duckdb")), key=lambda p: p.stat().st_size)
    for f in work.glob(f"{biggest.name}*"):
        shutil.copy(f, alone / f.name)
    t0 = time.perf_counter()
    live_store(Settings(), alone / biggest.name).open().close()
    one_s = time.perf_counter() - t0
    shutil.rmtree(alone)
    layout = Layout("files" if kind == "attach" else kind, shards, work, job["budget"],
                    job["min_memory_mib"])
    all_s = layout.open()
    layout.close()
    return {"variant": job["variant"], "reopen_largest_s": round(one_s, 3),
            "reopen_all_s": round(all_s, 3)}


# -- the parent: interleaved runs ----------------------------------------------------


def spawn(job: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.shard_cost", "--child", json.dumps(job)],
        capture_output=True, text=True, env=common.repo_env(), cwd=job["work"],
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"child {job['variant']} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.shard_cost",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, nargs="+", default=[200, 20_000, 100_000],
                    help="events per timed flush (default 200 20000 100000)")
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS,
                    help="one, files:N, attach:N; ':whole' merges every share of a large flush")
    ap.add_argument("--repeat", type=int, default=2, help="rounds, variants interleaved")
    ap.add_argument("--budget", choices=["split", "full"], default="split")
    ap.add_argument("--min-memory-mib", type=int, default=128,
                    help="floor of a file's split DuckDB memory limit (default 128 MiB)")
    ap.add_argument("--partitions", type=int, default=16,
                    help="partitions of the topics for the one-file layout (default 16)")
    ap.add_argument("--history", type=int, default=20_000,
                    help="events folded untimed first, in 5,000-event flushes (default 20,000)")
    ap.add_argument("--live-events", type=int, default=40_000)
    ap.add_argument("--catchup-events", type=int, default=200_000)
    ap.add_argument("--campaigns", type=int, default=common.SIM_CAMPAIGNS)
    ap.add_argument("--recipients", type=int, default=common.SIM_RECIPIENTS)
    ap.add_argument("--no-reopen", action="store_true", help="skip the reopen after a kill")
    args = ap.parse_args(argv)

    if args.child:
        job = json.loads(args.child)
        print(json.dumps(child_reopen(job) if job.get("reopen") else child_run(job)), flush=True)
        return 0

    for spec in args.variants:
        parse_variant(spec)
    scratch = common.workdir(NAME)
    runs: list[dict[str, Any]] = []
    sets: dict[int, Path] = {}
    try:
        for batch in args.batch:
            n = args.history + (args.live_events if batch < 10_000 else args.catchup_events)
            if n not in sets:
                sets[n] = scratch / f"events-{n}.pickle"
                sets[n].write_bytes(pickle.dumps(consumed(n, args.campaigns, args.recipients)))
        for r in range(args.repeat):
            for batch in args.batch:
                live = batch < 10_000
                n = args.history + (args.live_events if live else args.catchup_events)
                for spec in args.variants:
                    work = Path(scratch / f"r{r}-{batch}-{spec.replace(':', '-')}")
                    work.mkdir()
                    job = {"variant": spec, "work": str(work), "events": str(sets[n]),
                           "history": args.history, "batch": batch, "budget": args.budget,
                           "partitions": args.partitions,
                           "min_memory_mib": args.min_memory_mib,
                           "crash": live and not args.no_reopen}
                    load = os.getloadavg()[0]
                    res = spawn(job)
                    res["loadavg_1m"] = round(load, 2)
                    res["round"] = r
                    if job["crash"]:
                        res.update({k: v for k, v in spawn({**job, "reopen": True}).items()
                                    if k != "variant"})
                    runs.append(res)
                    shutil.rmtree(work, ignore_errors=True)
                    w = res["flush_wall"]
                    print(f"r{r} batch {batch:>6} {spec:<18} load {load:4.2f} | "
                          f"p50/p99 {w['p50_ms']:7.1f} / {w['p99_ms']:7.1f} ms | "
                          f"{res['events_per_s']:>7,} ev/s | "
                          f"touched {res['stores_touched_per_flush']:5.1f}"
                          f" | RSS +{res['rss_stores_mb']:5.0f} MB"
                          f" | empty commit {res['empty_commit']['p50_ms']:.1f} ms"
                          + (f" | reopen all/largest {res['reopen_all_s']:.2f} / "
                             f"{res['reopen_largest_s']:.2f} s" if "reopen_all_s" in res else ""),
                          flush=True)
    except BaseException:
        common.tidy(failed=True)
        raise
    common.tidy()
    path = common.save_result(NAME, {
        "method": "Store.flush alone, live configuration; events routed by murmur2(campaign_id) "
                  f"% N; {args.history:,} events of history in {HISTORY_BATCH:,}-event flushes, "
                  "then the timed flushes; each variant a child process, interleaved per round",
        "campaigns": args.campaigns, "recipients": args.recipients,
        "runs": runs,
    })
    print(f"results appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
