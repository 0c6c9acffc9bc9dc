"""(e) Status endpoint latency with 50 concurrent pollers while ``projector serve`` ingests
2,000 events/s.

The load is ``projector simulate --rate 2000`` (the project's own paced
producer, single-event records) in a child process. Pollers are 50 asyncio
tasks sharing a pool of 50 keep-alive connections in this process (the lean
client of ``bench.rawhttp``: httpx's own CPU capped the closed loop),
each in a closed loop (next request as soon as the previous answered) over
the campaigns the simulator defines first. Each poller has its own API key
per workspace, as separate clients would: the API rate-limits each key (50
requests/s by default), and with one key per workspace the paced and closed
phases used to measure mostly fast 429s. A phase with any answer other
than 200 does not meet the target. Latency is measured client-side (request
sent -> body read), so it includes queueing in the client and the server;
the server's own ``projector_http_request_seconds`` histogram for the route
(scraped from /metrics before and after) is reported alongside, as bucket
bounds.

Three phases: ``closed`` (50 pollers flat out: a saturation test, latency is
mostly queueing, ~ pollers / throughput), ``paced`` (each of the 50 pollers
polls once every ``PACED_INTERVAL`` s, far more often than the 5-15 s real
pollers use) and ``gentle`` (once a second each, below the server's ceiling,
so latency is close to service time plus the wait for the GIL).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench import common
from bench._serve import serve
from bench.rawhttp import RawHTTPError, RawPool
from projector.intake import runtime

NAME = "status_latency"
POLLERS = 50
RATE = 2000
PACED_INTERVAL = 0.25
# Once a second per poller: still 5-15x more often than the real pollers, well
# under the server's ceiling; what a poller sees when the server is not saturated.
GENTLE_INTERVAL = 1.0
# 1,500 requests: a p99 of 500 (10 s, as before) rested on its 5 slowest.
GENTLE_SECONDS = 30.0
SIM = {"campaigns": 12, "recipients": 3000, "seed": 11}
ROUTE = "/v1/campaign/{campaign_id}/status"


def _histogram(text: str) -> dict[float, float]:
    """Cumulative bucket counts of the status route (all status codes summed)."""
    out: dict[float, float] = {}
    for line in text.splitlines():
        if not line.startswith("projector_http_request_seconds_bucket{") or ROUTE not in line:
            continue
        labels, _, value = line.rpartition(" ")
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        bound = float("inf") if le == "+Inf" else float(le)
        out[bound] = out.get(bound, 0.0) + float(value)
    return out


def _lag(text: str) -> float | None:
    """Records the server is behind the log (its 1 s log poll), from /metrics."""
    for line in text.splitlines():
        if line.startswith("projector_lag_records_total "):
            return float(line.split()[1])
    return None


async def _settled(url: str, timeout: float = 60.0) -> float | None:
    """Wait until the server is within a second of the stream, and return its lag.

    A saturating phase leaves a backlog behind; measured right after it, the
    next phase would see the server catch up at several times 2,000 events/s.
    """
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        while True:
            lag = _lag((await client.get("/metrics")).text)
            if lag is not None and lag <= RATE or time.monotonic() > deadline:
                return lag
            await asyncio.sleep(0.5)


def _all_answered(phase: dict[str, Any]) -> bool:
    """Every request got a 200: a 429 (rate limit) or an error is not a status answer."""
    return phase["status_codes"] == {"200": phase["requests"]} and not phase["transport_errors"]


def _met(phase: dict[str, Any]) -> bool:
    return _all_answered(phase) and phase["client_latency"].get("p99_ms", float("inf")) < 20


def _bucket_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    diff = sorted((b, after.get(b, 0) - before.get(b, 0)) for b in after)
    total = diff[-1][1] if diff else 0
    res: dict[str, Any] = {"count": int(total)}
    for q in (0.5, 0.9, 0.99):
        for bound, cum in diff:
            if total and cum >= q * total:
                res[f"p{int(q * 100)}_le_ms"] = bound * 1000
                break
    return res


async def _phase(url: str, targets: list[tuple[str, str]], keys: dict[str, list[str]],
                 duration: float, interval: float | None) -> dict[str, Any]:
    import httpx

    lat: list[float] = []
    codes: dict[int, int] = {}
    errors = 0
    lag_before = await _settled(url)
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        text = (await client.get("/metrics")).text
        before = _histogram(text)
        stop = time.monotonic() + duration

        async def poller(i: int) -> None:
            nonlocal errors
            k = i
            next_at = time.monotonic() + (interval * i / POLLERS if interval else 0)
            while True:
                if interval:
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_at += interval
                if time.monotonic() >= stop:
                    return
                cid, ws = targets[k % len(targets)]
                key = keys[ws][i]  # each poller its own key, as separate clients would
                k += 1
                t0 = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(
                        pool.get(f"/v1/campaign/{cid}/status", {"X-API-Key": key}), 10.0)
                    lat.append(time.perf_counter() - t0)
                    codes[status] = codes.get(status, 0) + 1
                except (TimeoutError, RawHTTPError, OSError, asyncio.IncompleteReadError):
                    errors += 1

        pool = RawPool.for_url(url, POLLERS)
        t0 = time.monotonic()
        await asyncio.gather(*(poller(i) for i in range(POLLERS)))
        elapsed = time.monotonic() - t0
        await pool.close()
        text = (await client.get("/metrics")).text
        after = _histogram(text)
    return {
        "lag_records_at_start": lag_before,
        "lag_records_at_end": _lag(text),
        "seconds": round(elapsed, 1),
        "requests": len(lat),
        "requests_per_s": round(len(lat) / elapsed, 1),
        "status_codes": {str(k): v for k, v in sorted(codes.items())},
        "transport_errors": errors,
        "client_latency": common.summary_ms(lat),
        "server_histogram": _bucket_quantiles(before, after),
    }


async def _ready_targets(url: str, keys: dict[str, str], deadline: float
                         ) -> list[tuple[str, str]]:
    """(campaign_id, workspace_id) of the campaigns to poll, once the API shows them all."""
    import httpx

    wanted = common.first_campaigns(4000, **SIM)
    ready: list[tuple[str, str]] = []
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            ready = []
            for cid, ws in wanted:
                r = await client.get(f"/v1/campaign/{cid}/status", headers={"X-API-Key": keys[ws]})
                if r.status_code == 200:
                    ready.append((cid, ws))
            if len(ready) == len(wanted):
                break
            await asyncio.sleep(0.5)
    return ready


def run(duration: float = 20.0, paced_duration: float = 10.0, profile: bool = False,
        gentle_duration: float = GENTLE_SECONDS, partitions: int = common.PARTITIONS,
        shards: bool = False) -> dict[str, Any]:
    """``shards``: a store per partition (``--data-dir``) instead of one file."""
    with common.broker() as b:
        topics = common.fresh_topics()
        common.create_topics(b.bootstrap, topics, partitions)
        with serve(b.bootstrap, topics, NAME, profile, clients=POLLERS, shards=shards) as s:
            env = common.child_env(b.bootstrap, topics)
            sim = common.start_child(
                ["-m", "service", "simulate", "--rate", str(RATE),
                 "--campaigns", str(SIM["campaigns"]), "--recipients", str(SIM["recipients"]),
                 "--seed", str(SIM["seed"])],
                env=env, workdir=s.workdir, log_name="simulate")
            try:
                targets = asyncio.run(_ready_targets(s.url, s.keys, time.monotonic() + 25))
                # The pollers are the instrument: without this their own full
                # garbage collections (40-60 ms each, measured) land in the
                # latencies they record as if the server had been slow.
                runtime.settle()
                if not targets:
                    raise RuntimeError("no campaign became visible through the API in 25 s")
                # Lightest first; each phase starts once the server has caught up.
                keys = s.client_keys
                gentle = asyncio.run(
                    _phase(s.url, targets, keys, gentle_duration, GENTLE_INTERVAL))
                paced = asyncio.run(_phase(s.url, targets, keys, paced_duration, PACED_INTERVAL))
                closed = asyncio.run(_phase(s.url, targets, keys, duration, None))
            finally:
                if sim.poll() is not None and sim.returncode != 0:
                    print(f"  note: simulate exited {sim.returncode}: {common.tail(sim, 5)}")
                common.stop_child(sim)
            work = s.workdir
            died = s.proc.poll() is not None
    p99 = closed["client_latency"].get("p99_ms", float("inf"))
    for name, phase in (("gentle", gentle), ("paced", paced), ("closed loop", closed)):
        if not _all_answered(phase):
            print(f"  note: {name}: not every request was answered 200 "
                  f"({phase['status_codes']}, {phase['transport_errors']} transport errors): "
                  "its latencies are not those of status answers")
    figures = {
        "method": "projector serve + `projector simulate --rate 2000` (child); 50 asyncio "
                  "pollers sharing a pool of 50 keep-alive connections (bench.rawhttp), each "
                  "poller with its own API key; client-side latency; server histogram from "
                  "/metrics",
        "pollers": POLLERS,
        "ingest_events_per_s": RATE,
        "campaigns_polled": len(targets),
        "closed_loop": closed,
        "paced": {"interval_per_poller_s": PACED_INTERVAL, **paced},
        "gentle": {"interval_per_poller_s": GENTLE_INTERVAL, **gentle},
        "target": "p99 < 20 ms",
        "target_met_closed_loop": _met(closed),
        "target_met_paced": _met(paced),
        "target_met_gentle": _met(gentle),
        "serve_died_during_run": died,
        **({"profile": str(work / "profile.txt")} if profile else {}),
        "profiled": profile,  # py-spy attached: slower, not comparable
        "workdir": str(work),
    }
    cl, pl = closed["client_latency"], paced["client_latency"]
    common.row(NAME, "closed loop: requests/s", f"{closed['requests_per_s']:,.0f}", "")
    common.row(NAME, "closed loop: p50", f"{cl['p50_ms']:,.1f} ms", "")
    common.row(NAME, "closed loop: p99", f"{p99:,.1f} ms", "< 20 ms",
               figures["target_met_closed_loop"])
    offered = f"paced ({POLLERS / PACED_INTERVAL:.0f} req/s): p50"
    common.row(NAME, offered, f"{pl['p50_ms']:,.1f} ms", "")
    common.row(NAME, "paced: p99", f"{pl['p99_ms']:,.1f} ms", "< 20 ms",
               figures["target_met_paced"])
    gl = gentle["client_latency"]
    common.row(NAME, f"gentle ({POLLERS / GENTLE_INTERVAL:.0f} req/s): p50",
               f"{gl['p50_ms']:,.1f} ms", "")
    common.row(NAME, "gentle: p99", f"{gl['p99_ms']:,.1f} ms", "< 20 ms",
               figures["target_met_gentle"])
    common.save_result(NAME, figures)
    return figures
