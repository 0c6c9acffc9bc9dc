"""``projector api`` (read-only file) and the uvicorn server handed to ``projector serve``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.keys import KeyRing
from api.readstore import ReadStore
from api.server import build_uvicorn_server, read_only_status
from projector.intake.metrics import Metrics
from projector.settings import Settings
from service.commands.api import run as run_cli
from tests.api.conftest import ALPHA_ALL, BIG_CID, KEYS_DOC, NO_RUN_CID, OFFSETS

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def keys_file(tmp_path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(KEYS_DOC))
    return path


@pytest.fixture
def db_copy(db_file, tmp_path) -> Path:
    path = tmp_path / "copy.duckdb"
    shutil.copy(db_file, path)
    return path


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} not up after {timeout}s")


def cli(settings: Settings) -> int:
    return run_cli(argparse.Namespace(), settings)


def test_missing_database_exits_2(tmp_path, keys_file, capsys):
    assert cli(Settings(db=tmp_path / "absent.duckdb", api_keys=keys_file)) == 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_or_bad_keys_file_exits_2(db_copy, tmp_path, capsys):
    assert cli(Settings(db=db_copy, api_keys=None)) == 2
    assert "--api-keys" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": [{"key": "x"}]}')
    assert cli(Settings(db=db_copy, api_keys=bad)) == 2
    assert "keys[0]" in capsys.readouterr().err


def test_not_a_projector_database_exits_2(tmp_path, keys_file, capsys):
    import duckdb

    path = tmp_path / "other.duckdb"
    duckdb.connect(str(path)).close()
    assert cli(Settings(db=path, api_keys=keys_file)) == 2
    assert "not a projector database" in capsys.readouterr().err


def test_file_locked_by_another_process_exits_2(db_copy, keys_file, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from projector.store.writer import Store; "
         "s = Store(sys.argv[1]).open();"
         " print('open', flush=True); time.sleep(60)", str(db_copy)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        assert cli(Settings(db=db_copy, api_keys=keys_file)) == 2
        err = capsys.readouterr().err
        assert "held by another process" in err and "copy" in err
    finally:
        holder.kill()
        holder.wait()


def test_projector_api_serves_a_file_read_only(db_copy, keys_file):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "api", "--db", str(db_copy), "--api-keys",
         str(keys_file), "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", proc)
        ready = httpx.get(base + "/readyz").json()["data"]
        assert ready["mode"] == "read-only" and ready["ready"] is True
        resp = httpx.get(f"{base}/v1/campaign/{NO_RUN_CID}/status",
                         headers={"X-API-Key": ALPHA_ALL})
        assert resp.status_code == 200
        assert resp.json()["data"] == {"campaign_id": NO_RUN_CID, "status": "NO_RUN"}
        watermark = ",".join(f"{t}:{p}={o}" for (t, p), o in sorted(OFFSETS.items()))
        assert resp.headers["X-Projection-Watermark"] == watermark
        assert httpx.get(f"{base}/v1/campaign/{BIG_CID}/status").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0


def test_build_uvicorn_server_runs_in_a_thread_and_stops(reader):
    snapshot = read_only_status(reader)
    app = create_app(reader, keys=KeyRing.from_dict(KEYS_DOC), status=lambda: snapshot,
                     metrics=Metrics())
    port = free_port()
    server = build_uvicorn_server(app, "127.0.0.1", port)
    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        resp = httpx.get(f"http://127.0.0.1:{port}/v1/campaign/{BIG_CID}/status",
                         headers={"X-API-Key": ALPHA_ALL})
        assert resp.json()["data"]["campaign_run_id"] == "run_big_600"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert signal.getsignal(signal.SIGTERM) == before


def test_read_only_status_reads_the_file(reader: ReadStore):
    snap = read_only_status(reader)
    assert snap.mode == "read-only" and snap.ready and snap.offsets == OFFSETS
    assert snap.flush_seq == reader.flush_seq() > 0 and snap.lag is None
