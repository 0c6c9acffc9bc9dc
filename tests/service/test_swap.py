"""Blue/green: a running ``projector serve`` switches to a rebuilt database.

While a poller hits the API every 50 ms and new events keep arriving, the
server swaps to a database built by ``projector replay``: no request fails,
and afterwards the answers equal the pure fold of every event.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from api.payloads import campaign as views
from projector.fold.state import State
from projector.settings import Topics
from projector.tools.broker import free_port
from projector.tools.simulate import generate
from schemas import EVENT_ADAPTER
from tests.fixtures.kafka import produce
from tests.fixtures.processes import Procs, keys_file, projector_env, tail, watermark_total
from tests.fixtures.waiting import wait_until


def test_swap_under_polling_and_ingestion_fails_no_request(
    bootstrap: str, topics_factory: Callable[..., Topics], procs: Procs, tmp_path: Path
) -> None:
    topics = topics_factory()
    env = projector_env(bootstrap, topics, flush_max_events=300, flush_interval_ms=50)
    keys = keys_file(tmp_path / "keys.json")
    events = list(generate(3, 250, 21))
    first, second = events[: len(events) // 2], events[len(events) // 2 :]
    port = free_port()
    live_db, new_db = tmp_path / "live.duckdb", tmp_path / "new.duckdb"
    serve = procs.start(
        "serve",
        "--db",
        str(live_db),
        "--port",
        str(port),
        "--api-keys",
        str(tmp_path / "keys.json"),
        env=env,
        log_name="serve",
    )

    def alive() -> str | None:
        code = serve.poll()
        return None if code is None else f"serve exited {code}:\n{tail(serve)}"

    records = asyncio.run(produce(bootstrap, topics, first, array_size=7))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

        def at(total: int) -> Callable[[], bool]:
            return lambda: watermark_total(http.get("/readyz").json()["data"]["watermark"]) == total

        wait_until("the first half applied", at(records), 90, alive)
        # Rebuild from Kafka beside the live server (it never touches live.duckdb).
        procs.run("replay", "--db", str(new_db), env=env, timeout=120, log_name="replay")

        campaign = first[0]["campaign_id"]
        workspace = first[0]["workspace_id"]
        headers = {"X-API-Key": keys[workspace]}
        failures: list[str] = []
        polls = 0
        stop = threading.Event()

        def poll() -> None:
            nonlocal polls
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                while not stop.is_set():
                    try:
                        r = c.get(f"/v1/campaign/{campaign}/status", headers=headers)
                        if r.status_code != 200:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                    except httpx.HTTPError as e:
                        failures.append(repr(e))
                    polls += 1
                    time.sleep(0.05)

        poller = threading.Thread(target=poll)
        poller.start()
        # More events arrive while the swap catches NEW up.
        more: list[int] = []
        producer = threading.Thread(
            target=lambda: more.append(
                asyncio.run(produce(bootstrap, topics, second, array_size=7))
            )
        )
        producer.start()
        try:
            out = procs.run(
                "swap",
                "--url",
                f"http://127.0.0.1:{port}",
                "--db",
                str(new_db),
                "--admin-key",
                keys[workspace],
                env=env,
                timeout=120,
                log_name="swap",
            )
            assert "swapped to" in out, out
            during = polls  # polled while the swap command ran (and before)
            producer.join(60)
            wait_until("every event applied", at(records + more[0]), 90, alive)
            after = polls + 10
            wait_until("ten more polls on the new database", lambda: polls >= after, 30, alive)
        finally:
            stop.set()
            poller.join(10)
        # Counted, not timed: a faster swap must not make the test fail.
        assert during >= 5, during
        assert failures == []

        state = State()
        state.apply([EVENT_ADAPTER.validate_python(e) for e in events])
        for (ws, cid), c in state.campaigns.items():
            h = {"X-API-Key": keys[ws]}
            runs = state.runs_of((ws, cid))
            r = http.get(f"/v1/campaign/{cid}/status", headers=h)
            assert r.json()["data"] == views.status_payload(cid, views.latest_run(runs)), cid
            r = http.get(f"/v1/campaign/{cid}/analytics", headers=h)
            assert r.json()["data"] == views.analytics_payload(cid, c.workspace_id, runs), cid
        # Refusals leave the live database serving.
        r = http.post("/admin/swap", json={"db": str(tmp_path / "missing.duckdb")}, headers=headers)
        assert r.status_code == 409 and r.json()["errors"][0]["code"] == "SWAP_REFUSED"
        r = http.post("/admin/swap", json={"db": str(new_db)}, headers=headers)
        assert r.status_code == 409  # already live
    # The swapped-in file kept receiving flushes: it equals a fresh rebuild.
    serve.terminate()
    assert serve.wait(15) == 0, tail(serve)
    # A restart on the old file (PROJECTOR_DB still names it) is refused, clearly.
    again = procs.start("worker", "--db", str(live_db), env=env, log_name="old-db")
    assert again.wait(30) == 2
    said = Path(again.log_path).read_text()
    assert f"was swapped out for {new_db}" in said and f"--db {new_db}" in said, said
    fresh = tmp_path / "fresh.duckdb"
    procs.run("replay", "--db", str(fresh), env=env, timeout=120, log_name="replay2")
    procs.run(
        "verify", "--db", str(new_db), "--db", str(fresh), env=env, timeout=60, log_name="verify"
    )
