"""Projection layout versions: a database of another layout is refused, and rebuilt as documented.

A database records the layout version it was built with. Version 1 keyed
runs and messages by their ids alone (before F12); reading its rows with
today's queries would mix tenants or miss rows. So ``serve``, ``worker``,
``api`` and ``verify`` refuse it with a message that names the rebuild, and
the rebuild the message names (docs/operations.md, "Upgrading the projection
layout") works: ``projector replay`` into a new file, then serve that file.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import duckdb
import httpx
import pytest

from projector.settings import Topics
from projector.store.tables import SCHEMA_VERSION
from projector.store.writer import Store
from projector.tools.emit import EventEmitter
from tests.fixtures.golden import golden_events, golden_expected
from tests.fixtures.processes import (
    Procs,
    projector_cmd,
    projector_env,
    start_serve,
    watermark_total,
)
from tests.fixtures.waiting import wait_until

KEY = "upgrade-key-0123456789"


def make_version_1_database(path: Path) -> None:
    """A database as version 1 left it: runs keyed by run_id alone, and its version row."""
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE projector_meta (key VARCHAR PRIMARY KEY, value BIGINT NOT NULL)")
        con.execute("INSERT INTO projector_meta VALUES ('schema_version', 1), ('flush_seq', 3)")
        con.execute(
            "CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, campaign_id VARCHAR, "
            "workspace_id VARCHAR)"
        )
        con.execute("INSERT INTO runs VALUES ('r1', 'c1', 'ws_alpha')")


def refused(*args: str, env: dict[str, str]) -> str:
    """Run a command that must refuse: exit code 2; returns what it printed."""
    p = subprocess.run(projector_cmd(*args), env=env, capture_output=True, timeout=60)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode == 2, out
    return out


def test_store_refuses_another_layout_and_leaves_the_file_alone(tmp_path: Path) -> None:
    old = tmp_path / "v1.duckdb"
    make_version_1_database(old)
    before = old.read_bytes()
    with pytest.raises(Exception) as raised:
        Store(old).open()
    message = str(raised.value)
    assert "layout version 1" in message and f"version {SCHEMA_VERSION}" in message
    assert "projector replay --db NEW.duckdb" in message and "swap" in message
    assert old.read_bytes() == before  # not migrated, not touched


@pytest.mark.timeout(240)
def test_commands_refuse_a_version_1_database_and_the_documented_rebuild_serves_it(
    bootstrap: str, topics_factory: Callable[..., Topics], procs: Procs, tmp_path: Path
) -> None:
    topics = topics_factory(partitions=2)
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [
        {"key": KEY, "workspace_id": "ws_alpha", "scopes": ["campaigns:read", "analytics:read"]}
    ]}))  # fmt: skip
    env = projector_env(bootstrap, topics)
    old = tmp_path / "old.duckdb"
    make_version_1_database(old)

    with_keys = ["--api-keys", str(keys)]
    for command in (["serve", *with_keys], ["worker"], ["api", *with_keys]):
        out = refused(*command, "--db", str(old), env=env)
        assert "layout version 1" in out and "projector replay" in out, (command, out)
    new_for_verify = tmp_path / "empty.duckdb"
    Store(new_for_verify).open().close()
    out = refused("verify", "--db", str(old), "--db", str(new_for_verify), env=env)
    assert "layout version 1" in out

    async def produce() -> int:
        async with EventEmitter(bootstrap, topics, array_size=10) as em:
            await em.emit_many(golden_events())
            await em.flush()
            return em.records_sent

    records = asyncio.run(produce())
    new = tmp_path / "new.duckdb"
    procs.run("replay", "--db", str(new), env=env, timeout=120, log_name="replay")
    _, port, alive = start_serve(procs, env, new, keys)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

        def caught_up() -> bool:
            r = http.get("/readyz")
            return r.status_code == 200 and watermark_total(r.json()["data"]["watermark"]) == (
                records
            )

        wait_until(f"serve on the rebuilt file at {records} records", caught_up, 60, alive)
        for cid, want in golden_expected().items():
            if want["workspace_id"] != "ws_alpha":
                continue
            r = http.get(f"/v1/campaign/{cid}/status", headers={"X-API-Key": KEY})
            assert r.status_code == 200 and r.json()["data"] == want["status"], r.text
