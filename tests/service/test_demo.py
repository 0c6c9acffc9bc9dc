"""Smoke test of ``make demo``: a live campaign's status changes, Ctrl-C leaves nothing running.

Runs ``python -m service demo`` from a temporary directory (its files land
in ``var/demo/`` there), pastes the printed curl, polls until the payload
changes, then sends SIGINT and checks the exit code and that the broker and
the API ports are closed and the children are gone. The status it sees was
stamped with the wall clock (live mode), so its ``updated_at`` is not ahead.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from projector.tools.broker import free_port

CURL = re.compile(r"curl -H 'X-API-Key: (?P<key>[^']+)' (?P<url>http://\S+/status)")
BROKER = re.compile(r"broker\s+(?P<host>[\d.]+):(?P<port>\d+)")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # exited, waiting to be reaped by init


class Output:
    """The demo's stdout, read by a thread so the pipe never fills."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        for line in self.seen:
            if m := pattern.search(line):
                return m
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if m := pattern.search(line):
                return m
        raise AssertionError(
            f"no line matching {pattern.pattern!r} within {timeout}s; output:\n"
            + "".join(self.seen)
        )

    def drain(self) -> str:
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return "".join(self.seen)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to find leftover processes")
def test_demo_serves_a_changing_campaign_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTOR_")}
    env["PROJECTOR_CHECK_INVARIANTS"] = "1"  # as every server under test (fixtures.processes)
    demo = subprocess.Popen(
        [sys.executable, "-m", "service", "demo", "--port", str(port),
         "--rate", "300", "--campaigns", "2", "--recipients", "300"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out = Output(demo.stdout)
    try:
        curl = out.wait_for(CURL, timeout=60)
        broker = out.wait_for(BROKER, timeout=1)
        key, url = curl["key"], curl["url"]
        assert (tmp_path / "var" / "demo" / "api_keys.json").is_file()

        first = None
        deadline = time.monotonic() + 30
        with httpx.Client(headers={"X-API-Key": key}, timeout=5) as http:
            while True:
                r = http.get(url)
                if r.status_code == 200:
                    data = r.json()["data"]
                    if first is None:
                        first = data
                    elif data != first:
                        break
                else:
                    assert r.status_code == 404, r.text  # not defined yet is fine, errors are not
                assert time.monotonic() < deadline, (
                    f"status of {url} did not change within 30 s (first {first}):\n{out.drain()}"
                )
                time.sleep(0.2)
        assert data["status"] in {"scheduled", "running", "completed", "cancelled", "failed"}
        # Live mode stamps events with the wall clock: "updated" is now, not in the future.
        updated = datetime.fromisoformat(data["updated_at"]).timestamp()
        assert time.time() - 30 < updated <= time.time() + 1, data["updated_at"]

        children = children_of(demo.pid)
        assert len(children) >= 2, children  # the broker and projector serve
        demo.send_signal(signal.SIGINT)
        try:
            code = demo.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"demo did not stop within 15 s of SIGINT:\n{out.drain()}")
        assert code == 0, out.drain()
        assert not port_open("127.0.0.1", port), "the API port is still open"
        assert not port_open(broker["host"], int(broker["port"])), "the broker port is still open"
        assert [pid for pid in children if not gone(pid)] == [], "children left running"
        # Nothing left in the working directory but the demo's own var/
        # (faust used to leave a `<group>-data` dir per run there).
        assert [p.name for p in tmp_path.iterdir()] == ["var"]
    finally:
        if demo.poll() is None:
            demo.kill()  # its children die with it (PDEATHSIG)
            demo.wait()


pytestmark = pytest.mark.timeout(120)
