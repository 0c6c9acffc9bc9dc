"""Any node answers any request: three real servers, each owning some partitions.

Each node is a uvicorn server over its own database with ``owners=`` a static
ownership table of the test (no Kafka: the membership behind ``Owners`` is
tested with the broker elsewhere). Node A's database holds every campaign
(rows of partitions it owned before), B's and C's only their partitions'.
A fourth server, one node over every event, is the reference for the list.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.keys import KeyRing
from api.readstore import ReadStore
from api.routes.stream import StreamSettings
from api.routing import StaticOwners
from api.server import build_uvicorn_server, read_only_status
from projector.intake.feed import ChangeFeed
from projector.intake.metrics import Metrics
from projector.store.writer import Store
from schemas import CampaignDefined, RunCompleted, RunScheduled
from schemas.partitioner import partition_of
from tests.api.conftest import (
    ALPHA_ALL,
    ALPHA_ANALYTICS,
    BETA_ALL,
    BIG_CID,
    BIG_RUN,
    KEYS_DOC,
    EventFactory,
    all_events,
    seed,
)
from tests.api.test_server import free_port
from tests.fixtures.waiting import wait_until

PARTITIONS = 3
# Owners by partition: A owns 0, B owns 1, C owns 2 (BIG_CID is on partition 2).
OWNER_OF = {0: "a", 1: "b", 2: "c"}
ALPHA_CID = "2a12bc69-d769-23e5-6670-7eeecfa2300c"  # partition 0: node A's
ALPHA_RUN = "run_2_0_357"
FAST = StreamSettings(heartbeat=0.3, min_interval=0.1, send_timeout=2.0, poll_interval=0.1)


def more_campaigns() -> list[Any]:
    """Enough campaigns in ws_alpha for several pages on every node."""
    ev = EventFactory(start=datetime(2026, 5, 13, 8, 0, tzinfo=UTC))
    out: list[Any] = []
    for i in range(45):
        cid = f"c{i:03d}-{(i * 7919) % 1000:03d}"
        out.append(ev(CampaignDefined, campaign_id=cid, name=f"More {i}", channel="SMS",
                      provider="mock"))
        if i % 3 == 0:
            out.append(ev(RunScheduled, campaign_id=cid, run_id=f"run-{i}",
                          scheduled_at=datetime(2026, 5, 13, 9, i, tzinfo=UTC),
                          recipient_count=10, batch_size=10))
    return out


def events() -> list[Any]:
    return all_events() + more_campaigns()


class Node:
    """One API server in a thread."""

    def __init__(self, path: Path | ReadStore, owners: StaticOwners | None, port: int,
                 feed: ChangeFeed | None = None) -> None:
        self.reader = path if isinstance(path, ReadStore) else ReadStore.open_file(path)
        snapshot = read_only_status(self.reader)
        self.metrics = Metrics()
        self.app: FastAPI = create_app(self.reader, keys=KeyRing.from_dict(KEYS_DOC),
                                       status=lambda: snapshot, metrics=self.metrics,
                                       owners=owners, feed=feed)
        self.app.state.stream_settings = FAST
        self.owners = owners
        self.url = f"http://127.0.0.1:{port}"
        self.server = build_uvicorn_server(self.app, "127.0.0.1", port)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(f"{self.url} up", lambda: httpx.get(self.url + "/healthz").is_success, 20)

    def get(self, path: str, key: str | None = ALPHA_ALL, **headers: str) -> httpx.Response:
        h = {"X-Request-ID": "req-cluster-test", **headers}
        if key is not None:
            h["X-API-Key"] = key
        return httpx.get(self.url + path, headers=h, timeout=10)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.reader.close()


def _db(path: Path, evs: list[Any]) -> Path:
    with Store(path) as store:
        seed(store, evs)
    return path


@dataclass
class Cluster:
    nodes: dict[str, Node]
    single: Node

    def owner_of(self, campaign_id: str) -> Node:
        return self.nodes[OWNER_OF[partition_of(campaign_id, PARTITIONS)]]

    def others(self, campaign_id: str) -> list[Node]:
        owner = self.owner_of(campaign_id)
        return [n for n in self.nodes.values() if n is not owner]

    def reset(self) -> None:
        for node in self.nodes.values():
            assert node.owners is not None
            node.owners.table = {p: self.nodes[n].url for p, n in OWNER_OF.items()}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    evs = events()
    ports = {name: free_port() for name in "abc"}
    dbs = {
        "a": _db(tmp / "a.duckdb", evs),  # also rows of partitions it no longer owns
        "b": _db(tmp / "b.duckdb", [e for e in evs if partition_of(e.campaign_id, 3) == 1]),
        "c": _db(tmp / "c.duckdb", [e for e in evs if partition_of(e.campaign_id, 3) == 2]),
    }
    nodes: dict[str, Node] = {}
    single: Node | None = None
    try:
        for name in "abc":
            owners = StaticOwners(f"http://127.0.0.1:{ports[name]}", PARTITIONS)
            nodes[name] = Node(dbs[name], owners, ports[name])
        single = Node(_db(tmp / "all.duckdb", evs), None, free_port())
        made = Cluster(nodes, single)
        made.reset()
        yield made
    finally:
        for node in [*nodes.values(), *([single] if single else [])]:
            node.close()


@pytest.fixture
def fresh(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster with every node agreeing on the owners again afterwards."""
    cluster.reset()
    yield cluster
    cluster.reset()


def _same(via: httpx.Response, direct: httpx.Response) -> None:
    assert via.status_code == direct.status_code
    assert via.content == direct.content
    for name in ("ETag", "Cache-Control", "Content-Type", "X-Request-ID", "Retry-After",
                 "Content-Disposition"):
        assert via.headers.get(name) == direct.headers.get(name), name
    own = {k.lower(): v for k, v in direct.headers.items() if k.lower().startswith("x-projection")}
    assert {k.lower(): v for k, v in via.headers.items()
            if k.lower().startswith("x-projection")} == own


CAMPAIGN_PATHS = [
    "/v1/campaign/{cid}/status",
    "/campaigns/{cid}/status",
    "/v1/campaign/{cid}/analytics",
    "/v1/campaign/{cid}/runs",
    "/v1/campaign/{cid}/runs?limit=1&offset=1",
    "/v1/campaign/{cid}/runs/{run}",
    "/v1/campaign/{cid}/runs/{run}/snapshot",
    "/v1/campaign/{cid}/runs/{run}/recipients?limit=7&offset=3",
    "/v1/campaign/{cid}/runs/nope/recipients",
    "/v1/campaign/{cid}/batches?limit=1",
    "/v1/campaign/{cid}/stats",
    "/v1/campaign/{cid}/metrics",
    "/v1/campaign/{cid}/summary",
    "/v1/campaign/{cid}/execution",
    "/v1/campaign/{cid}/runs?limit=999",  # 422 from the owner
]


@pytest.mark.parametrize("template", CAMPAIGN_PATHS)
@pytest.mark.parametrize(("cid", "run"), [(BIG_CID, BIG_RUN), (ALPHA_CID, ALPHA_RUN)])
def test_a_non_owner_answers_as_the_owner(fresh: Cluster, template: str, cid: str,
                                          run: str) -> None:
    path = template.format(cid=cid, run=run)
    direct = fresh.owner_of(cid).get(path)
    assert direct.status_code in (200, 404, 422)
    for node in fresh.others(cid):
        _same(node.get(path), direct)


@pytest.mark.parametrize(("key", "cid"), [
    (BETA_ALL, BIG_CID),  # another workspace's campaign: 403
    (ALPHA_ALL, "no-such-campaign"),  # 404 from the unknown id's partition owner
    (ALPHA_ANALYTICS, BIG_CID),  # 403: runs need campaigns:read
    (None, BIG_CID),  # 401
])
def test_errors_through_a_non_owner_are_the_owners(fresh: Cluster, key: str | None,
                                                   cid: str) -> None:
    path = f"/v1/campaign/{cid}/runs"
    direct = fresh.owner_of(cid).get(path, key=key)
    assert direct.status_code in (401, 403, 404)
    for node in fresh.others(cid):
        _same(node.get(path, key=key), direct)


def test_if_none_match_gives_304_through_a_non_owner(fresh: Cluster) -> None:
    (via, *_) = fresh.others(BIG_CID)
    path = f"/v1/campaign/{BIG_CID}/status"
    first = via.get(path)
    tag = first.headers["ETag"]
    again = via.get(path, **{"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == tag
    _same(again, fresh.owner_of(BIG_CID).get(path, **{"If-None-Match": tag}))


def test_csv_export_streams_identically(fresh: Cluster) -> None:
    path = f"/v1/campaign/{BIG_CID}/runs/{BIG_RUN}/recipients"
    direct = fresh.owner_of(BIG_CID).get(path, Accept="text/csv")
    assert direct.status_code == 200 and direct.text.count("\n") == 601
    for node in fresh.others(BIG_CID):
        via = node.get(path, Accept="text/csv")
        _same(via, direct)
        # Streamed on, not buffered into one body of known length.
        assert "content-length" not in via.headers
        assert via.headers.get("transfer-encoding") == "chunked"


def _first_event(lines: Iterator[str]) -> dict[str, str]:
    event: dict[str, str] = {}
    for line in lines:
        if line == "" and "event" in event:
            return event
        if line == "":
            event = {}  # the advised reconnection delay, alone
        if line and not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
    raise AssertionError("the stream ended before an event")


def test_event_stream_through_a_non_owner(fresh: Cluster) -> None:
    owner = fresh.owner_of(BIG_CID)
    (via, *_) = fresh.others(BIG_CID)
    status = owner.get(f"/v1/campaign/{BIG_CID}/status").json()["data"]
    url = f"{via.url}/v1/campaign/{BIG_CID}/stream"
    with httpx.stream("GET", url, headers={"X-API-Key": ALPHA_ALL}, timeout=10) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        # The run is not over: the stream stays open, so this event came through
        # the proxy as it was sent, not when the answer ended.
        event = _first_event(resp.iter_lines())
        assert event["event"] == "status"
        assert orjson.loads(event["data"]) == status
        assert owner.app.state.stream_hubs  # the owner serves the stream
    # The client went: the forwarding node closes the owner's stream.
    wait_until("the owner's stream closed", lambda: not owner.app.state.stream_hubs, 10)


def test_events_of_a_live_owner_stream_through_a_non_owner(tmp_path: Path) -> None:
    """The owner folds a new event while a client streams through another node:
    the change arrives as its own event, then the end of the run ends both streams."""
    ports = {"a": free_port(), "c": free_port()}
    table = {0: f"http://127.0.0.1:{ports['a']}", 1: f"http://127.0.0.1:{ports['a']}",
             2: f"http://127.0.0.1:{ports['c']}"}
    owned = [e for e in all_events() if partition_of(e.campaign_id, PARTITIONS) == 2]
    store = Store(tmp_path / "live.duckdb").open()
    feed = ChangeFeed()
    nodes: list[Node] = []
    try:
        store.flush(owned, {})
        owner = Node(ReadStore(store.cursor), StaticOwners(table[2], PARTITIONS, dict(table)),
                     ports["c"], feed=feed)
        nodes.append(owner)
        via = Node(_db(tmp_path / "a.duckdb", []), StaticOwners(table[0], PARTITIONS,
                                                                dict(table)), ports["a"])
        nodes.append(via)
        url = f"{via.url}/v1/campaign/{BIG_CID}/stream"
        with httpx.stream("GET", url, headers={"X-API-Key": ALPHA_ALL}, timeout=10) as resp:
            lines = resp.iter_lines()
            first = _first_event(lines)
            assert orjson.loads(first["data"])["status"] != "completed"
            done = EventFactory(start=datetime(2026, 6, 1, tzinfo=UTC))(
                RunCompleted, campaign_id=BIG_CID, run_id=BIG_RUN)
            feed.publish(store.flush([done], {}))
            second = _first_event(lines)
            assert int(second["id"]) > int(first["id"])
            assert orjson.loads(second["data"]) == owner.get(
                f"/v1/campaign/{BIG_CID}/status").json()["data"]
            assert orjson.loads(second["data"])["status"] == "completed"
            assert _first_event(lines)["event"] == "end"
            assert list(lines) == []  # the owner ended its stream: so did the forwarder
    finally:
        for node in nodes:
            node.close()
        store.close()


def _assert_503(resp: httpx.Response) -> None:
    assert resp.status_code == 503
    assert resp.headers["Retry-After"].isdigit()
    body = resp.json()
    assert body["success"] is False and body["errors"][0]["code"] == "PARTITION_UNAVAILABLE"
    assert body["request_id"] == "req-cluster-test"


def test_a_forwarding_loop_ends_in_503(fresh: Cluster) -> None:
    a, b = fresh.nodes["a"], fresh.nodes["b"]
    assert a.owners is not None and b.owners is not None
    # A thinks B owns partition 2, B thinks A does: one hop, then 503.
    a.owners.table[2], b.owners.table[2] = b.url, a.url
    _assert_503(a.get(f"/v1/campaign/{BIG_CID}/status"))
    # A client's request marked as forwarded is never forwarded either.
    _assert_503(b.get(f"/v1/campaign/{BIG_CID}/status", **{"X-Projection-Hop": "x"}))
    assert 'projector_http_unroutable_total{reason="hop"}' in b.get("/metrics").text


def test_unsettled_partition_gives_503(fresh: Cluster) -> None:
    a = fresh.nodes["a"]
    assert a.owners is not None
    a.owners.table[2] = None
    _assert_503(a.get(f"/v1/campaign/{BIG_CID}/status"))
    _assert_503(a.get("/v1/campaigns"))
    # Partitions that are settled still answer.
    assert a.get(f"/v1/campaign/{ALPHA_CID}/status").status_code == 200
    metrics = a.get("/metrics").text
    assert 'projector_http_unroutable_total{reason="unsettled"} 2.0' in metrics


def test_owner_down_gives_503(fresh: Cluster) -> None:
    a = fresh.nodes["a"]
    assert a.owners is not None
    a.owners.table[2] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    _assert_503(a.get(f"/v1/campaign/{BIG_CID}/status"))
    _assert_503(a.get("/v1/campaigns"))
    assert 'projector_http_unroutable_total{reason="unreachable"} 2.0' in a.get("/metrics").text


def test_proxied_requests_are_counted(fresh: Cluster) -> None:
    b = fresh.nodes["b"]
    before = _counter(b, 'projector_http_proxied_total{kind="campaign"}')
    assert b.get(f"/v1/campaign/{BIG_CID}/status").status_code == 200
    assert _counter(b, 'projector_http_proxied_total{kind="campaign"}') == before + 1
    # Timed under its own name: no route of B's ran.
    assert 'route="(forwarded)"' in b.get("/metrics").text


def _counter(node: Node, name: str) -> float:
    for line in node.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


PAGES = ["", "?limit=7", "?limit=7&offset=7", "?limit=5&offset=40", "?limit=200",
         "?limit=3&offset=1000", "?limit=201", "?offset=-1"]


@pytest.mark.parametrize("key", [ALPHA_ALL, BETA_ALL, ALPHA_ANALYTICS, None])
@pytest.mark.parametrize("page", PAGES)
def test_the_campaign_list_of_every_node_is_the_single_nodes(fresh: Cluster, key: str | None,
                                                             page: str) -> None:
    expected = fresh.single.get("/v1/campaigns" + page, key=key)
    for node in fresh.nodes.values():
        got = node.get("/v1/campaigns" + page, key=key)
        assert got.status_code == expected.status_code
        assert got.json() == expected.json()


def test_the_campaign_list_spans_every_node(fresh: Cluster) -> None:
    body = fresh.nodes["b"].get("/v1/campaigns?limit=200").json()
    ids = [c["campaign_id"] for c in body["data"]]
    assert {partition_of(c, PARTITIONS) for c in ids} == {0, 1, 2}
    assert ids == sorted(ids) and body["meta"]["total"] == len(ids) > 45


def test_the_campaign_list_answers_304_when_no_part_changed(fresh: Cluster) -> None:
    c = fresh.nodes["c"]
    first = c.get("/v1/campaigns?limit=7")
    again = c.get("/v1/campaigns?limit=7", **{"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.headers["ETag"] == first.headers["ETag"]
    assert c.get("/v1/campaigns?limit=8").headers["ETag"] != first.headers["ETag"]
    assert _counter(c, 'projector_http_proxied_total{kind="list_part"}') >= 4
