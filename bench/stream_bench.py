"""Ingest rate of ``projector serve`` with 0 and with 200 stream clients on one campaign.

Method: a backlog of simulator events (two long campaigns, single-event
records) is produced once; each phase starts ``projector serve`` over a fresh
database and consumer group, so it ingests the same backlog from the start.
As soon as the busiest campaign exists, the phase opens its stream clients
(none, or ``CLIENTS`` of ``GET /v1/campaign/{id}/stream`` over separate
connections, in this process) and waits until every client has its first
payload; then, from the moment ``START_AT`` events are applied (the same
point of the backlog in every phase), it reads ``projector_events_applied``
from /metrics at the start and the end of a ``WINDOW`` s window (ended early
if the backlog is drained). The target campaign changes on nearly every flush, so each client
receives its 4 payloads per second (the stream's coalescing cap) throughout:
the worst case for one campaign. Phases alternate (0, 200, 200, 0, 0, ...)
so a drift of the machine's load hits both alike; the figure is the drop of
the mean rate with clients against the mean without.

Run: ``python -m bench.stream_bench [--clients 200] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench import common
from projector.tools.broker import free_port

NAME = "stream"
CLIENTS = 200
WINDOW = 12.0
BACKLOG = 90_000
START_AT = 20_000  # the window starts at this many events applied, in every phase
SIM = {"campaigns": 2, "recipients": 60_000, "seed": 23}
KEYS_PER_WORKSPACE = 4  # rate limits are per key (burst 100): spread 200 connects over 4 keys
TARGET_DROP = 0.20


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "_total "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Clients:
    """Stream clients on raw asyncio sockets, counting payloads (no HTTP client library:
    on a small machine the clients share the CPU with the server, so they must cost little)."""

    def __init__(self, url: str, path: str, keys: list[str], n: int) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.path, self.keys, self.n = host, int(port), path, keys, n
        self.payloads = [0] * n
        self.codes: Counter[int] = Counter()
        self.errors = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for i in range(self.n):
            self.tasks.append(asyncio.create_task(self._one(i)))
            await asyncio.sleep(0.005)  # ~200 connects per second

    async def _one(self, i: int) -> None:
        writer = None
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            key = self.keys[i % len(self.keys)]
            writer.write(f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
                         f"X-API-Key: {key}\r\nAccept: text/event-stream\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            code = int(head.split(b" ", 2)[1])
            self.codes[code] += 1
            if code != 200:
                return
            while chunk := await reader.read(65536):
                self.payloads[i] += chunk.count(b"event: status")
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.errors += 1
        finally:
            if writer is not None:
                writer.close()

    def all_have_one(self) -> bool:
        return len(self.tasks) == self.n and all(self.payloads)

    def received(self) -> int:
        return sum(self.payloads)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _phase(bootstrap: str, topics: Any, target: str, ws: str, n_clients: int,
                 backlog: int) -> dict[str, Any]:
    work = common.workdir(f"{NAME}-{n_clients}")
    keys = common.write_keys(work / "keys.json", KEYS_PER_WORKSPACE)
    port = free_port()
    env = common.child_env(bootstrap, topics, db=work / "serve.duckdb",
                           api_keys=work / "keys.json", host="127.0.0.1", port=port)
    p = common.start_child(["-m", "service", "serve"], env=env, workdir=work, log_name="serve")
    url = f"http://127.0.0.1:{port}"
    clients = Clients(url, f"/v1/campaign/{target}/stream", keys[ws], n_clients)
    try:
        common.wait_http(url + "/healthz", timeout=60, proc=p)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            headers = {"X-API-Key": keys[ws][0]}
            deadline = time.monotonic() + 60
            while (await http.get(f"/v1/campaign/{target}/status",
                                  headers=headers)).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the target campaign never appeared")
                await asyncio.sleep(0.05)
            t_connect = time.monotonic()
            await clients.start()
            while not clients.all_have_one():
                if time.monotonic() - t_connect > 60:
                    raise RuntimeError(f"clients not all served: {clients.codes}")
                await asyncio.sleep(0.05)
            connect_s = time.monotonic() - t_connect

            async def applied() -> float:
                return _metric((await http.get("/metrics")).text, "projector_events_applied")

            while (a0 := await applied()) < START_AT:
                await asyncio.sleep(0.05)
            t0, r0, c0 = time.monotonic(), clients.received(), _cpu_seconds(p.pid)
            a1, t1 = a0, t0
            while t1 - t0 < WINDOW:
                await asyncio.sleep(0.5)
                a1, t1 = await applied(), time.monotonic()
                if a1 >= backlog:  # drained: the window ends here
                    break
            r1, c1 = clients.received(), _cpu_seconds(p.pid)
    finally:
        await clients.stop()
        common.stop_child(p)
    seconds = t1 - t0
    return {
        "clients": n_clients,
        "connect_and_first_payload_s": round(connect_s, 2),
        "window_s": round(seconds, 2),
        "events_in_window": int(a1 - a0),
        "ingest_events_per_s": round((a1 - a0) / seconds, 1),
        "applied_at_window_start": int(a0),
        "serve_cpu_s_in_window": round(c1 - c0, 2),
        "events_per_serve_cpu_s": round((a1 - a0) / max(0.01, c1 - c0), 1),
        "loadavg_1m_at_end": os.getloadavg()[0],
        "payloads_received_in_window": r1 - r0,
        "payloads_per_client_per_s": round((r1 - r0) / max(1, n_clients) / seconds, 2)
        if n_clients else None,
        "stream_status_codes": {str(k): v for k, v in clients.codes.items()},
        "client_errors": clients.errors,
        "drained_in_window": a1 >= backlog,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=CLIENTS)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--events", type=int, default=BACKLOG)
    args = ap.parse_args(argv)
    if args.events < 2 * START_AT:
        # The window opens once START_AT events are applied: a smaller backlog
        # is drained before it opens and measures 0 events/s.
        ap.error(f"--events must be at least {2 * START_AT:,} (the measuring window opens "
                 f"at {START_AT:,} events applied)")

    events = list(common.sim_events(args.events, **SIM))
    per_campaign = Counter(e["campaign_id"] for e in events)
    target = per_campaign.most_common(1)[0][0]
    ws = next(e["workspace_id"] for e in events if e["campaign_id"] == target
              and "workspace_id" in e)
    print(f"stream bench: {len(events)} events, target campaign {target} "
          f"({per_campaign[target]} events), {args.clients} clients, {args.rounds} rounds",
          flush=True)
    phases: list[dict[str, Any]] = []
    with common.broker() as b:
        topics = common.fresh_topics()
        common.create_topics(b.bootstrap, topics)
        produced = common.preproduce(b.bootstrap, topics, events)
        print(f"  produced {produced}", flush=True)
        for r in range(args.rounds):
            order = (0, args.clients) if r % 2 == 0 else (args.clients, 0)
            for n in order:
                res = asyncio.run(_phase(b.bootstrap, topics, target, ws, n, len(events)))
                res["round"] = r + 1
                phases.append(res)
                print(f"  round {r + 1}, {n:>3} clients: {res['ingest_events_per_s']:>8.1f} "
                      f"events/s over {res['window_s']} s; payloads/client/s "
                      f"{res['payloads_per_client_per_s']}", flush=True)
    base = statistics.fmean(p["ingest_events_per_s"] for p in phases if p["clients"] == 0)
    loaded = statistics.fmean(p["ingest_events_per_s"] for p in phases if p["clients"])
    drop = (base - loaded) / base
    cpu_base = statistics.fmean(p["events_per_serve_cpu_s"] for p in phases if p["clients"] == 0)
    cpu_loaded = statistics.fmean(p["events_per_serve_cpu_s"] for p in phases if p["clients"])
    cpu_drop = (cpu_base - cpu_loaded) / cpu_base
    figures = {
        "method": "projector serve over a pre-produced backlog (single-event records, "
                  f"{SIM['campaigns']} simulated campaigns); per phase a fresh database; "
                  "ingest = delta of projector_events_applied over a window that starts once "
                  "every stream client has its first payload; phases alternate 0 / N clients; "
                  "serve's CPU time in the window from /proc",
        "produced": produced,
        "target_campaign_events": per_campaign[target],
        "clients": args.clients,
        "phases": phases,
        "ingest_events_per_s_0_clients": round(base, 1),
        "ingest_events_per_s_with_clients": round(loaded, 1),
        "drop": round(drop, 4),
        "events_per_serve_cpu_s_0_clients": round(cpu_base, 1),
        "events_per_serve_cpu_s_with_clients": round(cpu_loaded, 1),
        "cpu_efficiency_drop": round(cpu_drop, 4),
        "target": f"drop < {TARGET_DROP:.0%}",
        "target_met": drop < TARGET_DROP,
    }
    path = common.save_result(NAME, figures)
    common.header()
    common.row(NAME, "ingest events/s, 0 clients", f"{base:,.0f}")
    common.row(NAME, f"ingest events/s, {args.clients} clients", f"{loaded:,.0f}")
    common.row(NAME, "drop", f"{drop:.1%}", f"< {TARGET_DROP:.0%}", drop < TARGET_DROP)
    common.row(NAME, "events per serve CPU-s, 0 clients", f"{cpu_base:,.0f}")
    common.row(NAME, f"events per serve CPU-s, {args.clients} cl.", f"{cpu_loaded:,.0f}")
    common.row(NAME, "CPU efficiency drop", f"{cpu_drop:.1%}")
    print(f"results appended to {path}")
    common.tidy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
