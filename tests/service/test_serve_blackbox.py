"""Acceptance (issue 4): ``projector serve`` as a black box, over the real broker.

The golden example (in the contract's hostile order) and a generated scenario
go through Kafka into a ``projector serve`` subprocess. Every endpoint's
payload over HTTP must equal the golden file where it speaks and the pure
fold of everything produced otherwise, and every error case answers with its
status and stable code in the envelope. (A 500 cannot be provoked from
outside without breaking the server; ``tests/api/test_errors.py`` checks its
safe message in process.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.payloads import campaign as views
from projector.fold.state import State
from projector.settings import Topics
from projector.tools.emit import EventEmitter
from projector.tools.simulate import generate
from schemas import EVENT_ADAPTER
from tests.fixtures.golden import golden_events, golden_expected
from tests.fixtures.processes import Procs, projector_env, start_serve, watermark_total
from tests.fixtures.waiting import wait_until

ALL = ["campaigns:read", "analytics:read", "pii:read"]
KEYS = {
    "alpha": ("bb-alpha-all-0123456789", "ws_alpha", ALL),
    "beta": ("bb-beta-all-0123456789", "ws_beta", ALL),
    "gamma": ("bb-gamma-all-0123456789", "ws_gamma", ALL),
    "beta_campaigns": ("bb-beta-campaigns-0123", "ws_beta", ["campaigns:read"]),
    "beta_analytics": ("bb-beta-analytics-0123", "ws_beta", ["analytics:read"]),
    "beta_no_pii": ("bb-beta-no-pii-0123456", "ws_beta", ["campaigns:read", "analytics:read"]),
    "nobody": ("bb-nobody-0123456789ab", "ws_nobody", ALL),  # owns no campaign
}
ROLE_OF_WS = {ws: role for role, (_, ws, scopes) in KEYS.items() if scopes == ALL}


async def _produce(bootstrap: str, topics: Topics, events: list[Any]) -> int:
    async with EventEmitter(bootstrap, topics, array_size=1) as em:
        await em.emit_many(events)
        await em.flush()
        return em.records_sent


def _ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["errors"] is None, body
    assert r.headers["X-Request-ID"] == body["request_id"]
    return body["data"]


def _error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["data"] is None, body
    assert body["errors"][0]["code"] == code, body
    assert body["errors"][0]["message"], body
    assert r.headers["X-Request-ID"] == body["request_id"]


def test_every_endpoint_and_error_over_http(
    bootstrap: str, topics_factory: Callable[..., Topics], procs: Procs, tmp_path: Path
) -> None:
    topics = topics_factory(partitions=4)
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [
        {"key": key, "workspace_id": ws, "scopes": scopes} for key, ws, scopes in KEYS.values()
    ]}))  # fmt: skip
    env = projector_env(bootstrap, topics, flush_max_events=300, flush_interval_ms=50)
    _, port, alive = start_serve(procs, env, tmp_path / "p.duckdb", tmp_path / "keys.json")

    golden = golden_events()
    generated = [EVENT_ADAPTER.validate_python(e) for e in generate(2, 40, 5)]
    expected = State()
    expected.apply([*golden, *generated])
    want_golden = golden_expected()

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        wait_until("/readyz 200", lambda: http.get("/readyz").status_code == 200, 60, alive)
        records = asyncio.run(_produce(bootstrap, topics, [*golden, *generated]))

        def caught_up() -> bool:
            data = http.get("/readyz").json()["data"]
            return watermark_total(data["watermark"]) == records

        wait_until(f"the watermark to reach {records} records", caught_up, 60, alive)

        def get(path: str, key: str | None = None) -> httpx.Response:
            return http.get(path, headers={} if key is None else {"X-API-Key": KEYS[key][0]})

        # Every campaign, golden and generated: payloads equal the fold.
        assert {(w["workspace_id"], c) for c, w in want_golden.items()} < set(expected.campaigns)
        for (ws, cid), campaign in expected.campaigns.items():
            key = ROLE_OF_WS[ws]
            runs = expected.runs_of((ws, cid))
            status = _ok(get(f"/v1/campaign/{cid}/status", key))
            assert status == views.status_payload(cid, views.latest_run(runs)), cid
            assert _ok(get(f"/campaigns/{cid}/status", key)) == status
            analytics = _ok(get(f"/v1/campaign/{cid}/analytics", key))
            assert analytics == views.analytics_payload(cid, campaign.workspace_id, runs), cid
            if cid in want_golden:
                assert status == want_golden[cid]["status"], cid
                assert analytics == want_golden[cid]["analytics"], cid
            for run in runs:
                rid = run.run_id
                detail = _ok(get(f"/v1/campaign/{cid}/runs/{rid}", key))
                batches = expected.batches_of(run.key)
                recipients = views.listed_recipients(expected.recipients_of(run.key), batches)
                assert detail == views.run_detail_payload(
                    campaign, run, expected.snapshots.get(run.key), batches,
                    recipients[: views.RECIPIENTS_CAP],
                    more_recipients=len(recipients) > views.RECIPIENTS_CAP,
                ), rid  # fmt: skip
                for field, value in want_golden.get(cid, {}).get("runs", {}).get(rid, {}).items():
                    got = detail[field] if field in detail else detail["run"][field]
                    assert got == value, (rid, field)
                snap = expected.snapshots.get(run.key)
                plain = get(f"/v1/campaign/{cid}/runs/{rid}/snapshot", key)
                with_pii = get(
                    f"/v1/campaign/{cid}/runs/{rid}/snapshot?include_recipients=true", key
                )
                if snap is None:
                    _error(plain, 404, "SNAPSHOT_NOT_FOUND")
                    _error(with_pii, 404, "SNAPSHOT_NOT_FOUND")
                    continue
                got = _ok(plain)
                assert got == views.snapshot_payload(run, snap, include_recipients=False)
                assert "recipients" not in got
                assert _ok(with_pii) == views.snapshot_payload(run, snap, include_recipients=True)

        # Errors, each with its status and code.
        cid = next(c for c in want_golden if want_golden[c]["workspace_id"] == "ws_beta")
        rid = sorted(want_golden[cid]["runs"])[0]
        other_cid = next(c for c in want_golden if want_golden[c]["workspace_id"] == "ws_alpha")
        other_rid = sorted(want_golden[other_cid]["runs"])[0]
        status_path = f"/v1/campaign/{cid}/status"
        _error(get(status_path), 401, "UNAUTHORIZED")
        r = http.get(status_path, headers={"X-API-Key": "not-a-key-0123456789"})
        _error(r, 401, "UNAUTHORIZED")
        _error(get(status_path, "alpha"), 403, "FORBIDDEN")
        _error(get(status_path, "nobody"), 403, "FORBIDDEN")
        _error(get(f"/v1/campaign/{cid}/analytics", "beta_campaigns"), 403, "INSUFFICIENT_SCOPE")
        _error(get(status_path, "beta_analytics"), 403, "INSUFFICIENT_SCOPE")
        snapshot_path = f"/v1/campaign/{cid}/runs/{rid}/snapshot"
        _error(
            get(snapshot_path + "?include_recipients=true", "beta_no_pii"),
            403,
            "INSUFFICIENT_SCOPE",
        )
        assert "recipients" not in _ok(get(snapshot_path, "beta_no_pii"))
        unknown = "c0000000-0000-4000-8000-0000000000ff"
        _error(get(f"/v1/campaign/{unknown}/status", "beta"), 404, "CAMPAIGN_NOT_FOUND")
        _error(get(f"/v1/campaign/{cid}/runs/{other_rid}", "beta"), 404, "RUN_NOT_FOUND")
        _error(get(f"/v1/campaign/{cid}/runs/run_nope", "beta"), 404, "RUN_NOT_FOUND")
        _error(get(snapshot_path + "?include_recipients=maybe", "beta"), 422, "VALIDATION_ERROR")
        _error(get("/v1/nowhere", "beta"), 404, "NOT_FOUND")

        # Freshness and cheap polling, from outside.
        r = get(status_path, "beta")
        assert r.headers["X-Projection-Lag"] == "0"
        assert watermark_total(r.headers["X-Projection-Watermark"]) == records
        again = http.get(
            status_path, headers={"X-API-Key": KEYS["beta"][0], "If-None-Match": r.headers["ETag"]}
        )
        assert again.status_code == 304, again.text
        assert alive() is None


pytestmark = pytest.mark.timeout(180)
