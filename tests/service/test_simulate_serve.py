"""Acceptance: the simulator through the real broker into ``projector serve``.

The API's numbers must equal the pure fold of the simulator's JSONL output
for the same seed: every campaign's status and analytics, and every run's
detail (run, batches, recipients page and recipient summary).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.payloads import campaign as views
from projector.fold.state import State
from projector.settings import Topics
from projector.tools.simulate import WORKSPACES, generate
from schemas import EVENT_ADAPTER
from tests.fixtures.kafka import produce
from tests.fixtures.processes import Procs, keys_file, projector_env, start_serve, watermark_total
from tests.fixtures.waiting import wait_until

CAMPAIGNS, RECIPIENTS, SEED = 3, 300, 17


def fold_jsonl(path: Path) -> State:
    state = State()
    state.apply([EVENT_ADAPTER.validate_json(line) for line in path.read_bytes().splitlines()])
    return state


def test_api_numbers_equal_the_fold_of_the_simulators_jsonl(
    bootstrap: str, topics_factory: Callable[..., Topics], procs: Procs, tmp_path: Path
) -> None:
    topics = topics_factory(partitions=4)
    env = projector_env(bootstrap, topics, flush_max_events=400, flush_interval_ms=50)
    keys = keys_file(tmp_path / "keys.json")
    _, port, alive = start_serve(procs, env, tmp_path / "p.duckdb", tmp_path / "keys.json")

    # The same seed written as JSONL by the CLI: what the API is checked against.
    jsonl = tmp_path / "sim.jsonl"
    procs.run(
        "simulate", "--campaigns", str(CAMPAIGNS), "--recipients", str(RECIPIENTS),
        "--seed", str(SEED), "--out", str(jsonl), env=env, timeout=60, log_name="sim-out",
    )  # fmt: skip
    expected = fold_jsonl(jsonl)
    assert len(expected.campaigns) == CAMPAIGNS

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        wait_until("/readyz 200", lambda: http.get("/readyz").status_code == 200, 60, alive)

        events = list(generate(CAMPAIGNS, RECIPIENTS, SEED))
        records = asyncio.run(produce(bootstrap, topics, events, array_size=7))
        assert records < len(events)  # packed: arrays travel too

        def caught_up() -> dict[str, Any] | None:
            r = http.get("/readyz")
            data = r.json()["data"]
            return data if watermark_total(data["watermark"]) == records else None

        ready = wait_until(f"the watermark to reach {records} records", caught_up, 60, alive)
        assert ready["lag"] == 0, ready

        for (ws, cid), campaign in expected.campaigns.items():
            headers = {"X-API-Key": keys[ws]}
            runs = expected.runs_of((ws, cid))
            assert runs, cid

            r = http.get(f"/v1/campaign/{cid}/status", headers=headers)
            assert r.status_code == 200, r.text
            assert r.headers["X-Projection-Lag"] == "0"
            assert r.json()["data"] == views.status_payload(cid, views.latest_run(runs)), cid

            r = http.get(f"/v1/campaign/{cid}/analytics", headers=headers)
            assert r.status_code == 200, r.text
            assert r.json()["data"] == views.analytics_payload(cid, campaign.workspace_id, runs)

            for run in runs:
                r = http.get(f"/v1/campaign/{cid}/runs/{run.run_id}", headers=headers)
                assert r.status_code == 200, r.text
                got = r.json()["data"]
                assert got["recipient_summary"] == views.recipient_summary(run), run.run_id
                batches = expected.batches_of(run.key)
                recipients = views.listed_recipients(expected.recipients_of(run.key), batches)
                want = views.run_detail_payload(
                    campaign,
                    run,
                    expected.snapshots.get(run.key),
                    batches,
                    recipients[: views.RECIPIENTS_CAP],
                    more_recipients=len(recipients) > views.RECIPIENTS_CAP,
                )
                assert got == want, run.run_id

            other = next(ws for ws in WORKSPACES if ws != campaign.workspace_id)
            r = http.get(f"/v1/campaign/{cid}/status", headers={"X-API-Key": keys[other]})
            assert r.status_code == 403, r.text


pytestmark = pytest.mark.timeout(180)
