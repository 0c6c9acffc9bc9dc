"""Helpers of the reliability suite: a running ``projector serve``, waits, producing, comparing.

Every wait polls a condition against a deadline and fails with what it last
saw, or at once if the process under test died.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from projector.settings import Topics
from projector.tools.broker import free_port
from tests.fixtures.kafka import produce
from tests.fixtures.processes import Procs, keys_file, tail, watermark_total
from tests.fixtures.projections import dump, fold_dicts, read_db
from tests.fixtures.waiting import wait_until

__all__ = ["Serve", "dump", "fold_dicts", "produce", "read_db", "rss_kib", "wait_until"]


def produce_sync(
    bootstrap: str, topics: Topics, events: list[dict[str, Any]], array_size: int = 1
) -> int:
    return asyncio.run(produce(bootstrap, topics, events, array_size))


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class Serve:
    """One ``projector serve`` subprocess with an HTTP client on its API."""

    def __init__(
        self, procs: Procs, env: dict[str, str], db: Path, tmp: Path, log_name: str = "serve"
    ) -> None:
        keys_path = tmp / "keys.json"
        self.keys = keys_file(keys_path)
        self.port = free_port()
        self.db = db
        self.proc = procs.start(
            "serve", "--db", str(db), "--port", str(self.port), "--api-keys", str(keys_path),
            env=env, log_name=log_name,
        )  # fmt: skip
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> str | None:
        code = self.proc.poll()
        return None if code is None else f"projector serve exited {code}:\n{tail(self.proc)}"

    def log(self) -> str:
        return Path(self.proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def wait(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        return wait_until(what, check, timeout, self.alive)

    def readyz(self) -> tuple[int, dict[str, Any]]:
        r = self.http.get("/readyz")
        return r.status_code, r.json()["data"]

    def applied_records(self) -> int:
        """Records DuckDB has applied, over all source partitions (sum of next offsets)."""
        return watermark_total(self.readyz()[1]["watermark"])

    def wait_listening(self, timeout: float = 30) -> None:
        self.wait(
            "the API to answer", lambda: self.http.get("/healthz").status_code == 200, timeout
        )

    def wait_applied(self, records: int, timeout: float) -> None:
        self.wait(f"{records} records applied", lambda: self.applied_records() == records, timeout)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        text = self.http.get("/metrics").text
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.metrics().items() if n == name and want <= ls)

    def status(self, campaign_id: str, workspace_id: str) -> httpx.Response:
        return self.http.get(
            f"/v1/campaign/{campaign_id}/status", headers={"X-API-Key": self.keys[workspace_id]}
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> float:
        """Signal the process and wait for it; seconds it took to exit."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"projector serve did not exit within {timeout}s of signal {sig}:\n"
                f"{tail(self.proc)}"
            )
        finally:
            self.http.close()
        return time.monotonic() - t0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.http.close()


def applied_offsets(watermark: str) -> dict[str, int]:
    """``/readyz``'s watermark ('topic:partition=offset,...') as {'topic:partition': offset}."""
    out = {}
    for part in watermark.split(","):
        tp, offset = part.rsplit("=", 1)
        out[tp] = int(offset)
    return out


def campaign_owner(events: list[dict[str, Any]]) -> dict[str, str]:
    """campaign_id -> workspace_id of a stream."""
    return {e["campaign_id"]: e["workspace_id"] for e in events}


def cpu_count() -> int:
    return os.cpu_count() or 1
