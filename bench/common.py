"""Shared pieces of the benchmarks: broker, fresh topics, pre-produced events, timing, results.

Every benchmark starts its own embedded Tansu broker (memory storage, so each
run starts empty), creates topics with unique names, and writes one entry per
run into ``bench/results/<name>.json`` (a JSON list; new runs are appended)
together with the machine it ran on.

Child processes (faust workers, ``projector serve``) run with their working
directory in a temporary folder, so faust's ``<app>-data`` folders never land
in the repository. Those folders hold each run's logs and database (tens of
MB for (c)); :func:`tidy` removes them once a benchmark has succeeded, so
repeated runs do not fill ``/tmp``, and keeps them when it failed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from projector.settings import Topics
from projector.tools.broker import EmbeddedBroker

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PARTITIONS = 4

# The simulator's shape used by the throughput runs: 20 campaigns of 3,000
# recipients (1-3 runs each) make ~274k events, about 45% submits and 54%
# DLRs, the rest run and batch lifecycle events; runs are cut at N events.
SIM_CAMPAIGNS = 20
SIM_RECIPIENTS = 3000
SIM_SEED = 7


# -- machine and results -------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
    except (OSError, ValueError):
        nproc = os.cpu_count() or 0
    return {
        "nproc": nproc,
        "cpu_model": model,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def save_result(name: str, figures: dict[str, Any]) -> Path:
    """Append one run's figures (with the machine) to ``bench/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    runs: list[Any] = []
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
            runs = loaded if isinstance(loaded, list) else [loaded]
        except ValueError:
            runs = []
    runs.append({"benchmark": name, "machine": machine_info(), **figures})
    path.write_text(json.dumps(runs, indent=2) + "\n")
    return path


def row(name: str, figure: str, value: str, target: str = "", met: bool | None = None) -> None:
    verdict = "" if met is None else ("met" if met else "NOT met")
    print(f"| {name:<19} | {figure:<34} | {value:>18} | {target:<22} | {verdict:<7} |", flush=True)


def header() -> None:
    cols = f"{'benchmark':<19} | {'figure':<34} | {'value':>18} | {'target':<22} | {'verdict':<7}"
    print(f"| {cols} |")
    print(f"|{'-' * 21}|{'-' * 36}|{'-' * 20}|{'-' * 24}|{'-' * 9}|", flush=True)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    if not ms:
        return {"count": 0}
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


# -- broker, topics, events ----------------------------------------------------


@contextmanager
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(log_path=workdir("broker") / "tansu.log")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def fresh_topics(single: str | None = None) -> Topics:
    """Unique topic names; with ``single`` every event type goes to that one topic."""
    tag = uuid.uuid4().hex[:8]
    if single is not None:
        name = f"bench-{tag}.{single}"
        return Topics(runs=name, batches=name, submits=name, dlrs=name,
                      deadletter=f"bench-{tag}.deadletter")
    return Topics(
        runs=f"bench-{tag}.runs",
        batches=f"bench-{tag}.batches",
        submits=f"bench-{tag}.submits",
        dlrs=f"bench-{tag}.dlrs",
        deadletter=f"bench-{tag}.deadletter",
    )


def create_topics(bootstrap: str, topics: Topics, partitions: int = PARTITIONS) -> None:
    from projector.intake.topics import ensure_topics

    asyncio.run(ensure_topics(bootstrap, list(dict.fromkeys(topics.all)), partitions))


def sim_events(n: int, *, campaigns: int = SIM_CAMPAIGNS, recipients: int = SIM_RECIPIENTS,
               seed: int = SIM_SEED) -> Iterator[dict[str, Any]]:
    """The first ``n`` events of the simulated stream, however many are asked for.

    One stream of the default mix holds 273,658 events; past its end come
    further waves of campaigns (the next seeds), so ``--array-events 500000``
    runs on 500,000 events (it silently ran on 273,658 before). Waves share
    no campaign, run or message, so no folding rule sees across them.
    """
    from projector.tools.simulate import generate

    waves = (generate(campaigns, recipients, seed + k) for k in itertools.count())
    if campaigns == 0 or recipients == 0:
        waves = iter([generate(campaigns, recipients, seed)])
    return itertools.islice(itertools.chain.from_iterable(waves), n)


def consumed_events(n: int) -> list[Any]:
    """The first ``n`` simulated events as the consumer's loop hands them to the writer.

    Decoded by the compiled fast path (``FastEvent``: type and canonical
    JSON), a pydantic model where the fast path declines, as ``Store.flush``
    receives them live.
    """
    import orjson

    from schemas import EVENT_ADAPTER
    from schemas.fastdecode import fast_events

    events: list[Any] = []
    for e in sim_events(n):
        fast = fast_events(orjson.dumps(e))
        if fast is not None:
            events.extend(fast[0])
        else:
            events.append(EVENT_ADAPTER.validate_python(e))
    return events


def preproduce(bootstrap: str, topics: Topics, events: Iterable[dict[str, Any]],
               array_size: int = 1) -> dict[str, Any]:
    """Produce events with the project's EventEmitter; returns counts and the rate."""
    from projector.tools.emit import EventEmitter

    async def go() -> dict[str, Any]:
        t0 = time.perf_counter()
        async with EventEmitter(bootstrap, topics, array_size=array_size) as em:
            it = iter(events)
            while chunk := list(itertools.islice(it, 2000)):
                await em.emit_many(chunk, validate=False)
            await em.flush()
            n, records = em.events_sent, em.records_sent
        dt = time.perf_counter() - t0
        return {"events": n, "records": records, "produce_seconds": round(dt, 2),
                "produce_events_per_s": round(n / dt)}

    return asyncio.run(go())


def log_ends(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """True log ends from fetch high watermarks (Tansu's ListOffsets is wrong for batches)."""
    from projector.intake.offsets import log_end_offsets

    return asyncio.run(log_end_offsets(bootstrap, list(dict.fromkeys(topics))))


# -- child processes -----------------------------------------------------------


def repo_env() -> dict[str, str]:
    """This process's environment with the repository first on ``PYTHONPATH``:
    children run in a work folder and import ``bench`` and ``projector`` from here."""
    env = dict(os.environ)
    inherited = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + inherited if inherited else "")
    return env


def child_env(bootstrap: str, topics: Topics, **extra: Any) -> dict[str, str]:
    """``PROJECTOR_*`` settings for a child, as an operator would set them."""
    env = repo_env()
    env.update(
        PROJECTOR_BOOTSTRAP=bootstrap,
        PROJECTOR_TOPIC_RUNS=topics.runs,
        PROJECTOR_TOPIC_BATCHES=topics.batches,
        PROJECTOR_TOPIC_SUBMITS=topics.submits,
        PROJECTOR_TOPIC_DLRS=topics.dlrs,
        PROJECTOR_TOPIC_DEADLETTER=topics.deadletter,
        PROJECTOR_GROUP_ID=f"bench-{uuid.uuid4().hex[:10]}",
        PROJECTOR_LOG_LEVEL="WARNING",
    )
    env.update({f"PROJECTOR_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def start_child(argv: list[str], env: dict[str, str], workdir: Path, log_name: str,
                profile: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``python <argv>`` in ``workdir``.

    With ``profile``, ``py-spy record --pid`` attaches to the child (raw
    collapsed stacks, all threads) and writes the file when the child exits.
    """
    cmd = [sys.executable, *argv]
    log = open(workdir / f"{log_name}.log", "wb")  # noqa: SIM115 - lives as long as the child
    p = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    p.log_path = workdir / f"{log_name}.log"  # type: ignore[attr-defined]
    p.spy = None  # type: ignore[attr-defined]
    if profile is not None:
        spy = Path(sys.executable).parent / "py-spy"
        if not spy.exists():
            p.kill()
            raise SystemExit("--profile needs py-spy in the venv (pip install py-spy); "
                             "it is a measurement aid, not a project dependency")
        p.spy = subprocess.Popen(  # type: ignore[attr-defined]
            [str(spy), "record", "--pid", str(p.pid), "--format", "raw", "--rate", "100",
             "--threads", "--nonblocking", "-o", str(profile)],
            stdout=subprocess.DEVNULL, stderr=open(workdir / "py-spy.log", "wb"))  # noqa: SIM115
    return p


def _wait_spy(p: subprocess.Popen[bytes]) -> None:
    spy = getattr(p, "spy", None)
    if spy is not None:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def wait_child(p: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        code = p.wait(timeout=timeout)
        _wait_spy(p)
        return code
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        _wait_spy(p)
        raise RuntimeError(f"child {p.args} did not finish in {timeout:.0f}s; log:\n"
                           f"{tail(p)}") from None


def stop_child(p: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    try:
        if p.poll() is None:
            p.terminate()
            try:
                return p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                return p.wait()
        return p.returncode
    finally:
        _wait_spy(p)


def tail(p: subprocess.Popen[bytes], lines: int = 30) -> str:
    try:
        text = Path(p.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# Work folders made since the last tidy(): removed or reported by it.
_SCRATCH: list[Path] = []


def workdir(name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    _SCRATCH.append(path)
    return path


@contextmanager
def tidied(*, keep: bool = False) -> Iterator[None]:
    """Around a benchmark's run: ``tidy`` its work folders after, kept if it failed."""
    failed = True
    try:
        yield
        failed = False
    finally:
        tidy(failed=failed, keep=keep)


def tidy(*, failed: bool = False, keep: bool = False) -> None:
    """Remove the work folders made since the last call, or say where they are.

    A failed benchmark keeps them (its logs tell why), and so does ``keep``
    (profiles, databases to look at); otherwise each run would leave its
    logs and database in ``/tmp`` for good.
    """
    paths = list(_SCRATCH)
    _SCRATCH.clear()
    if failed or keep:
        for path in paths:
            print(f"  kept {path}", flush=True)
        return
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


# -- API helpers (serve-based benchmarks) ---------------------------------------


def write_keys(path: Path, clients: int = 1) -> dict[str, list[str]]:
    """``clients`` keys per simulator workspace (campaigns and analytics read); ws -> keys.

    The API limits requests per key (``PROJECTOR_RATE_LIMIT``, 50/s by
    default): a benchmark of many pollers gives each its own key, as many
    real clients would have, or it measures the limiter's 429s.
    """
    from projector.tools.simulate import WORKSPACES

    keys = {ws: [f"bench-key-{ws}-{i}-{uuid.uuid4().hex[:12]}" for i in range(clients)]
            for ws in WORKSPACES}
    path.write_text(json.dumps({"keys": [
        {"key": k, "workspace_id": ws, "scopes": ["campaigns:read", "analytics:read"]}
        for ws, ks in keys.items() for k in ks
    ]}))
    return keys


def parse_watermark(header: str) -> dict[tuple[str, int], int]:
    """``topic:partition=next_offset,...`` -> offsets (``flush:N`` before any offset -> {})."""
    out: dict[tuple[str, int], int] = {}
    if not header or header.startswith("flush:"):
        return out
    for part in header.split(","):
        tp, _, off = part.rpartition("=")
        topic, _, partition = tp.rpartition(":")
        out[(topic, int(partition))] = int(off)
    return out


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(proc)}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def first_campaigns(n_events: int, *, campaigns: int, recipients: int, seed: int,
                    ) -> list[tuple[str, str]]:
    """(campaign_id, workspace_id) of campaigns whose first event is within ``n_events``."""
    from projector.tools.simulate import generate

    seen: dict[str, str] = {}
    for e in itertools.islice(generate(campaigns, recipients, seed), n_events):
        if e["campaign_id"] not in seen and "workspace_id" in e:
            seen[e["campaign_id"]] = e["workspace_id"]
    return list(seen.items())
