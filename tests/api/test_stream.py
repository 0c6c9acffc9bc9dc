"""``GET /v1/campaign/{id}/stream``: server-sent status payloads.

The live tests run the app in a real uvicorn server (a thread, as in
``projector serve``) over a Store written by the test: each flush is
published to the app's ChangeFeed, and the payload expected at each flush
comes from the pure fold of the events flushed so far. A payload's ``id`` is
the campaign's position, i.e. the flush that last changed it, so every
payload received can be checked against the fold at that exact flush.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from api.app import create_app
from api.keys import KeyRing
from api.payloads import campaign as views
from api.readstore import ReadStore
from api.routes.stream import EventStreamResponse, StreamSettings
from api.server import build_uvicorn_server
from projector.fold.state import State
from projector.intake.feed import ChangeFeed
from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.store.writer import Store
from projector.tools.broker import free_port
from projector.tools.simulate import generate
from schemas import EVENT_ADAPTER
from tests.api.conftest import (
    ALPHA_ALL,
    ALPHA_ANALYTICS,
    BETA_ALL,
    BIG_CID,
    GAMMA_ALL,
    KEYS_DOC,
    NO_RUN_CID,
    get,
)
from tests.fixtures.golden import golden_expected

TERMINAL = {"run.completed", "run.failed", "run.cancelled"}
FAST = StreamSettings(heartbeat=0.3, min_interval=0.25, send_timeout=2.0, poll_interval=0.1)


# -- SSE parsing ---------------------------------------------------------------


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Events as dicts ({"comment": ...} for comment lines), from decoded lines."""
    event: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
    if event:
        yield event


# -- a live app over a Store the test writes -----------------------------------


class Live:
    def __init__(self, tmp: Path, settings: StreamSettings, with_feed: bool = True) -> None:
        self.store = Store(tmp / "live.duckdb").open()
        self.feed = ChangeFeed() if with_feed else None
        self.keys = KeyRing.from_dict(KEYS_DOC)
        status = PipelineStatus(mode="live", ready=True, offsets={}, flush_seq=0)
        self.app = create_app(ReadStore(self.store.cursor), keys=self.keys,
                              status=status.snapshot, metrics=Metrics(), feed=self.feed)
        self.app.state.stream_settings = settings
        self.port = free_port()
        self.server = build_uvicorn_server(self.app, "127.0.0.1", self.port)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = State()
        self.expected: dict[int, dict[str, Any]] = {}  # flush seq -> payload per campaign

    def flush(self, events: list[Any], campaign_id: str) -> int:
        result = self.store.flush(events, {})
        self.state.apply(events)
        (key,) = [k for k in self.state.campaigns if k[1] == campaign_id]
        self.expected[result.seq] = views.status_payload(
            campaign_id, views.latest_run(self.state.runs_of(key))
        )
        if self.feed is not None:
            self.feed.publish(result)
        return result.seq

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.store.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Callable[..., Live]]:
    made: list[Live] = []

    def make(settings: StreamSettings = FAST, with_feed: bool = True) -> Live:
        lv = Live(tmp_path / str(len(made)), settings, with_feed)
        made.append(lv)
        return lv

    (tmp_path / "0").mkdir()
    for i in range(1, 4):
        (tmp_path / str(i)).mkdir()
    yield make
    for lv in made:
        lv.close()


def one_run(recipients: int = 150, seed: int = 5) -> tuple[str, str, list[Any]]:
    """A simulated campaign cut at its first run's terminal event (the stream's end)."""
    events = []
    for e in generate(1, recipients, seed):
        events.append(EVENT_ADAPTER.validate_python(e))
        if e["type"] in TERMINAL:
            break
    assert events[-1].type in TERMINAL
    return events[0].campaign_id, events[0].workspace_id, events


KEY_OF = {"ws_alpha": ALPHA_ALL, "ws_beta": BETA_ALL, "ws_gamma": GAMMA_ALL}


def key_for(workspace: str) -> str:
    if workspace not in KEY_OF:
        pytest.skip(f"no test key for {workspace}")
    return KEY_OF[workspace]


# -- live stream while events flow ---------------------------------------------


def test_each_payload_equals_the_fold_at_its_flush_and_the_last_the_final_fold(live) -> None:
    lv = live()
    cid, ws, events = one_run()
    chunks = [events[i : i + 12] for i in range(0, len(events), 12)]
    lv.flush(chunks[0], cid)  # the campaign exists before anyone subscribes

    def writer() -> None:
        for chunk in chunks[1:]:
            time.sleep(0.03)
            lv.flush(chunk, cid)

    received: list[tuple[float, int, dict[str, Any]]] = []
    kinds: list[str] = []
    with httpx.Client(base_url=lv.url, timeout=10) as http, http.stream(
        "GET", f"/v1/campaign/{cid}/stream", headers={"X-API-Key": key_for(ws)}
    ) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        t = threading.Thread(target=writer)
        started = False
        for ev in parse_sse(r.iter_lines()):
            if "event" in ev:
                kinds.append(ev["event"])
            if ev.get("event") == "status":
                received.append((time.monotonic(), int(ev["id"]), orjson.loads(ev["data"])))
                if not started:
                    t.start()
                    started = True
        t.join()
    assert kinds[-1] == "end" and set(kinds[:-1]) == {"status"}, kinds
    assert len(received) >= 3, "the stream should push while events flow"
    for _, position, payload in received:
        assert payload == lv.expected[position], position
    positions = [p for _, p, _ in received]
    assert positions == sorted(set(positions))
    final = views.status_payload(cid, views.latest_run(lv.state.runs_of((ws, cid))))
    assert received[-1][2] == final
    assert final["status"] in {"completed", "failed", "cancelled"}
    gaps = [b[0] - a[0] for a, b in zip(received[1:], received[2:], strict=False)]
    assert all(g > 0.15 for g in gaps), gaps  # coalesced to ~4 per second
    deadline = time.monotonic() + 5
    while lv.feed.subscribers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lv.feed.subscribers() == 0


def test_many_clients_share_one_hub_and_each_sees_the_fold(live) -> None:
    lv = live(StreamSettings(heartbeat=5, min_interval=0.1))
    cid, ws, events = one_run(recipients=200, seed=8)
    chunks = [events[i : i + 20] for i in range(0, len(events), 20)]
    lv.flush(chunks[0], cid)
    n = 25

    first_payloads = 0

    async def one(http: httpx.AsyncClient, got: list[tuple[int, dict[str, Any]]]) -> None:
        nonlocal first_payloads
        async with http.stream("GET", f"/v1/campaign/{cid}/stream",
                               headers={"X-API-Key": key_for(ws)}) as r:
            assert r.status_code == 200
            event: dict[str, Any] = {}
            async for line in r.aiter_lines():
                if line:
                    name, _, value = line.partition(":")
                    event[name] = value.removeprefix(" ")
                    continue
                if event.get("event") == "status":
                    got.append((int(event["id"]), orjson.loads(event["data"])))
                    if len(got) == 1:
                        first_payloads += 1
                event = {}

    async def go() -> list[list[tuple[int, dict[str, Any]]]]:
        results: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in range(n)]
        async with httpx.AsyncClient(base_url=lv.url, timeout=20) as http:
            tasks = [asyncio.create_task(one(http, results[i])) for i in range(n)]
            deadline = time.monotonic() + 20
            while first_payloads < n:  # every client connected and has its first payload
                assert time.monotonic() < deadline, f"{first_payloads} of {n} clients connected"
                await asyncio.sleep(0.01)
            assert lv.feed.subscribers() == 1  # one subscription for all of them
            for chunk in chunks[1:]:
                await asyncio.to_thread(lv.flush, chunk, cid)
                await asyncio.sleep(0.02)
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
        return results

    results = asyncio.run(go())
    final = views.status_payload(cid, views.latest_run(lv.state.runs_of((ws, cid))))
    for got in results:
        assert len(got) >= 2
        for position, payload in got:
            assert payload == lv.expected[position], position
        assert got[-1][1] == final
    assert lv.feed.subscribers() == 0
    assert lv.app.state.stream_hubs == {}


def test_last_event_id_skips_the_current_payload_then_pushes_changes(live) -> None:
    lv = live()
    cid, ws, events = one_run(recipients=40, seed=8)
    half = len(events) // 2
    position = lv.flush(events[:half], cid)
    got: list[dict[str, Any]] = []
    with httpx.Client(base_url=lv.url, timeout=10) as http, http.stream(
        "GET", f"/v1/campaign/{cid}/stream",
        headers={"X-API-Key": key_for(ws), "Last-Event-ID": str(position)},
    ) as r:
        assert r.status_code == 200
        for ev in parse_sse(r.iter_lines()):
            got.append(ev)
            if ev.get("comment") == "ping" and len([g for g in got if "comment" in g]) == 1:
                lv.flush(events[half:], cid)  # nothing before the first ping: now change it
    status = [g for g in got if g.get("event") == "status"]
    assert got[0] == {"retry": "2000"}
    assert got[1] == {"comment": "ping"}  # the current payload was skipped
    assert [int(s["id"]) for s in status] == [position + 1]
    assert orjson.loads(status[0]["data"]) == lv.expected[position + 1]
    assert got[-1]["event"] == "end"

    # Reconnecting with the final position: 204, so EventSource stops reconnecting.
    r = httpx.get(f"{lv.url}/v1/campaign/{cid}/stream",
                  headers={"X-API-Key": key_for(ws), "Last-Event-ID": str(position + 1)})
    assert r.status_code == 204
    # Any other id: the final payload, then the end.
    r = httpx.get(f"{lv.url}/v1/campaign/{cid}/stream",
                  headers={"X-API-Key": key_for(ws), "Last-Event-ID": "1"})
    evs = list(parse_sse(iter(r.text.split("\n"))))
    assert [e.get("event") for e in evs[1:]] == ["status", "end"]


def test_heartbeat_when_nothing_changes(live) -> None:
    lv = live(StreamSettings(heartbeat=0.2, poll_interval=0.05))
    cid, ws, events = one_run(recipients=30, seed=9)
    lv.flush(events[:5], cid)
    with httpx.Client(base_url=lv.url, timeout=10) as http, http.stream(
        "GET", f"/v1/campaign/{cid}/stream", headers={"X-API-Key": key_for(ws)}
    ) as r:
        t0 = time.monotonic()
        seen: list[tuple[float, dict[str, Any]]] = []
        for ev in parse_sse(r.iter_lines()):
            seen.append((time.monotonic() - t0, ev))
            if sum("comment" in e for _, e in seen) == 3:
                break
    kinds = [e.get("event") or e.get("comment") or "retry" for _, e in seen]
    assert kinds == ["retry", "status", "ping", "ping", "ping"]
    assert 0.45 < seen[-1][0] < 2.0, seen


def test_without_a_feed_the_stream_polls(live) -> None:
    lv = live(StreamSettings(heartbeat=5, poll_interval=0.05), with_feed=False)
    cid, ws, events = one_run(recipients=30, seed=9)
    lv.flush(events[:5], cid)
    with httpx.Client(base_url=lv.url, timeout=10) as http, http.stream(
        "GET", f"/v1/campaign/{cid}/stream", headers={"X-API-Key": key_for(ws)}
    ) as r:
        evs = []
        for ev in parse_sse(r.iter_lines()):
            evs.append(ev)
            if len(evs) == 2:
                lv.flush(events[5:], cid)
    status = [e for e in evs if e.get("event") == "status"]
    assert len(status) == 2
    for s in status:
        assert orjson.loads(s["data"]) == lv.expected[int(s["id"])]
    assert evs[-1]["event"] == "end"


# -- auth and the read-only file -------------------------------------------------


def test_auth_errors_before_the_stream(client) -> None:
    golden = next(iter(golden_expected()))
    path = f"/v1/campaign/{BIG_CID}/stream"
    r = get(client, path, key=None)
    assert r.status_code == 401 and r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    r = get(client, path, key="not-a-key")
    assert r.status_code == 401
    r = get(client, path, key=ALPHA_ANALYTICS)
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "INSUFFICIENT_SCOPE"
    r = get(client, "/v1/campaign/nope/stream")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "CAMPAIGN_NOT_FOUND"
    r = get(client, path, key=BETA_ALL)
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "FORBIDDEN"
    assert r.headers["content-type"].startswith("application/json")
    assert golden  # the golden set is there (the terminal test below reads it)


def test_terminal_campaign_sends_its_payload_and_ends_and_key_in_query(client, reader) -> None:
    expected = golden_expected()
    cid, want = next((c, w) for c, w in expected.items() if w["workspace_id"] == "ws_alpha"
                     and w["status"]["status"] in {"completed", "failed", "cancelled"})
    status = get(client, f"/v1/campaign/{cid}/status").json()["data"]
    for r in (get(client, f"/v1/campaign/{cid}/stream"),
              client.get(f"/v1/campaign/{cid}/stream?api_key={ALPHA_ALL}")):
        assert r.status_code == 200, r.text
        evs = list(parse_sse(iter(r.text.split("\n"))))
        assert [e.get("event") for e in evs] == [None, "status", "end"]
        assert int(evs[1]["id"]) == reader.position(("ws_alpha", cid))
        assert orjson.loads(evs[1]["data"]) == status == want["status"]
    position = reader.position(("ws_alpha", cid))
    r = get(client, f"/v1/campaign/{cid}/stream", **{"Last-Event-ID": str(position)})
    assert r.status_code == 204


def test_no_run_campaign_streams_no_run(live) -> None:
    lv = live(StreamSettings(heartbeat=0.1, poll_interval=0.05))
    cid, ws, events = one_run(recipients=10, seed=3)
    lv.flush(events[:1], cid)  # campaign.defined only
    with httpx.Client(base_url=lv.url, timeout=10) as http, http.stream(
        "GET", f"/v1/campaign/{cid}/stream", headers={"X-API-Key": key_for(ws)}
    ) as r:
        it = parse_sse(r.iter_lines())
        next(it)
        first = next(it)
    assert orjson.loads(first["data"]) == {"campaign_id": cid, "status": "NO_RUN"}
    assert NO_RUN_CID  # the seeded NO_RUN campaign is checked by the payload tests


# -- slow clients ---------------------------------------------------------------


def test_a_client_that_takes_nothing_is_dropped() -> None:
    closed: list[bool] = []

    async def chunks() -> Any:
        while True:
            yield b": ping\n\n"

    async def go() -> float:
        sent = 0
        disconnect = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal sent
            sent += 1
            if sent > 3:
                await asyncio.sleep(3600)  # the client's buffers are full

        resp = EventStreamResponse(chunks(), send_timeout=0.2, on_close=lambda: closed.append(True))
        t0 = time.monotonic()
        await asyncio.wait_for(resp({"type": "http"}, receive, send), 5)
        return time.monotonic() - t0

    took = asyncio.run(go())
    assert 0.15 < took < 2, took
    assert closed == [True]


def test_a_disconnected_client_ends_the_stream() -> None:
    closed: list[bool] = []

    async def chunks() -> Any:
        while True:
            await asyncio.sleep(0.01)
            yield b": ping\n\n"

    async def go() -> None:
        async def receive() -> dict[str, Any]:
            await asyncio.sleep(0.1)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            return None

        resp = EventStreamResponse(chunks(), send_timeout=5, on_close=lambda: closed.append(True))
        await asyncio.wait_for(resp({"type": "http"}, receive, send), 5)

    asyncio.run(go())
    assert closed == [True]
