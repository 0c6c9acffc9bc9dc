"""``bench.failover`` loads each partition as asked, reports sane figures, and fails
rather than report a figure when no correct answer comes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bench import common
from bench.failover import FailoverError, Load, Options, Probe, Seen, await_correct, run
from schemas.partitioner import partition_of


def test_every_partition_gets_its_share_and_a_probe_with_a_run() -> None:
    load = Load(partitions=4, per_partition=1500)
    events = list(load.events())
    assert load.counts == [1500] * 4
    per = [0] * 4
    for e in events:
        per[partition_of(e["campaign_id"], 4)] += 1
    assert per == [1500] * 4
    probes = load.probes()
    assert [p.partition for p in probes] == [0, 1, 2, 3]
    for probe in probes:
        assert partition_of(probe.campaign_id, 4) == probe.partition
        mine = [e for e in events if e["campaign_id"] == probe.campaign_id]
        assert any("run_id" in e for e in mine)
        assert {e["workspace_id"] for e in mine} == {probe.workspace_id}
    assert all(len({e["campaign_id"] for e in events
                     if partition_of(e["campaign_id"], 4) == p}) >= 2 for p in range(4))


class _Stub(BaseHTTPRequestHandler):
    """A node that answers every status with ``self.server.answer`` (code, data)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        code, data = self.server.answer  # type: ignore[attr-defined]
        body = json.dumps({"data": data}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _ask(server: ThreadingHTTPServer, answer: tuple[int, object], timeout: float = 1.0,
         alive: Callable[[], str | None] = lambda: None) -> Seen:
    server.answer = answer  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{server.server_address[1]}"
    probe = Probe(0, "cmp-1", "ws_alpha", expected={"status": "completed", "sent": 10})
    with httpx.Client(timeout=2) as http:
        return await_correct(http, url, [probe], {"ws_alpha": "k"}, time.monotonic(),
                             timeout=timeout, every=0.02, alive=alive)


def test_a_node_that_never_answers_is_an_error_not_a_figure(stub: ThreadingHTTPServer) -> None:
    with pytest.raises(FailoverError, match=r"no correct answer .* partitions \[0\].*'503'"):
        _ask(stub, (503, None))


def test_an_answer_that_is_not_the_expected_one_never_counts(stub: ThreadingHTTPServer) -> None:
    with pytest.raises(FailoverError, match=r"wrong 200s [1-9]"):
        _ask(stub, (200, {"status": "running", "sent": 3}))


def test_a_survivor_that_dies_stops_the_wait(stub: ThreadingHTTPServer) -> None:
    t = time.monotonic()
    with pytest.raises(FailoverError, match="survivor died during the failover: node1 exited -9"):
        _ask(stub, (503, None), timeout=30.0, alive=lambda: "node1 exited -9")
    assert time.monotonic() - t < 5


def test_the_expected_answer_is_timed(stub: ThreadingHTTPServer) -> None:
    seen = _ask(stub, (200, {"status": "completed", "sent": 10}))
    assert 0 < seen.first_correct[0] < 1
    assert seen.codes == {"200": 1} and seen.wrong == 0


@pytest.mark.timeout(300)
def test_a_tiny_run_reports_sane_figures() -> None:
    failed = True
    try:
        figures = run(Options(events_per_partition=2000, trials=1, timeout=120))
        failed = False
    finally:
        common.tidy(failed=failed)
    assert figures["events_per_partition_produced"] == [2000] * 4
    (trial,) = figures["trials"]
    moved = trial["moved_partitions"]
    assert moved and set(moved) <= {0, 1, 2, 3}
    samples = list(trial["first_correct_s"].values())
    s = figures["first_correct"]
    assert s["count"] == len(samples) == len(moved)
    assert 0 < s["min_s"] <= s["p50_s"] <= s["p99_s"] == s["max_s"] < 120
    # The survivor owns the moved partitions before it can answer for them.
    assert trial["survivor_owned_s"] is not None
    assert trial["survivor_owned_s"] <= s["min_s"] + 0.5
    assert figures["wrong_answers"] == 0
    assert figures["complete"] is True
