"""The OpenAPI document describes what the API really answers (schemathesis).

A property-based fuzz of every operation with a valid key (no 5xx, every
response on its documented schema, status code, content type and headers),
and the known-good ids of the seeded database, whose 200 payloads must
validate against the response models (they forbid undocumented fields).
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from tests.api.conftest import (
    ALPHA_ALL,
    ALPHA_CAMPAIGNS,
    BETA_ALL,
    BIG_CID,
    BIG_RUN,
    NO_RUN_CID,
    get,
)
from tests.fixtures.golden import golden_events, golden_expected


@pytest.fixture
def api_schema(client: TestClient):
    return schemathesis.openapi.from_asgi("/openapi.json", client.app)


# Driven through hypothesis directly: schemathesis' pytest plugin (from_fixture /
# parametrize) does not run under this pytest version (Function._nodeid).
PATHS = [
    "/v1/campaign/{campaign_id}/status",
    "/campaigns/{campaign_id}/status",
    "/v1/campaign/{campaign_id}/analytics",
    "/v1/campaign/{campaign_id}/runs/{run_id}",
    "/v1/campaign/{campaign_id}/runs/{run_id}/snapshot",
    "/healthz",
    "/readyz",
    "/metrics",
]


def test_schema_lists_these_operations(api_schema):
    """The primary reference's operations (other views are checked by their own tests)."""
    ops = [r.ok() for r in api_schema.get_all_operations()]
    assert set(PATHS) <= {op.path for op in ops}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("key", [ALPHA_ALL, ALPHA_CAMPAIGNS])
def test_fuzz_no_server_error_and_on_schema(api_schema, path, key):
    operation = api_schema[path]["GET"]

    @given(case=operation.as_strategy())
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    def check(case):
        # A random id is unknown (404) or a scope is missing (403): the positive-data
        # check would wrongly expect 2xx for any schema-valid id.
        case.call_and_validate(
            headers={"X-API-Key": key},
            excluded_checks=[schemathesis.checks.positive_data_acceptance],
        )

    check()


def _known_cases(api_schema):
    expected = golden_expected()
    snap = next(e for e in golden_events() if e.type == "run.snapshot_frozen")
    key_of = {"ws_alpha": ALPHA_ALL, "ws_beta": BETA_ALL}
    for cid, want in expected.items():
        key = key_of[want["workspace_id"]]
        yield "/v1/campaign/{campaign_id}/status", {"campaign_id": cid}, {}, key
        yield "/campaigns/{campaign_id}/status", {"campaign_id": cid}, {}, key
        yield "/v1/campaign/{campaign_id}/analytics", {"campaign_id": cid}, {}, key
        for rid in want["runs"]:
            yield "/v1/campaign/{campaign_id}/runs/{run_id}", {"campaign_id": cid,
                                                                "run_id": rid}, {}, key
    for include in ("true", "false"):
        yield ("/v1/campaign/{campaign_id}/runs/{run_id}/snapshot",
               {"campaign_id": snap.campaign_id, "run_id": snap.run_id},
               {"include_recipients": include}, key_of[snap.workspace_id])
    yield "/v1/campaign/{campaign_id}/status", {"campaign_id": NO_RUN_CID}, {}, ALPHA_ALL
    yield "/v1/campaign/{campaign_id}/analytics", {"campaign_id": NO_RUN_CID}, {}, ALPHA_ALL
    yield ("/v1/campaign/{campaign_id}/runs/{run_id}",
           {"campaign_id": BIG_CID, "run_id": BIG_RUN}, {}, ALPHA_ALL)


def test_real_payloads_validate_against_the_documented_models(api_schema, client):
    seen = 0
    for path, params, query, key in _known_cases(api_schema):
        case = api_schema[path]["GET"].Case(path_parameters=params, query=query)
        resp = case.call_and_validate(headers={"X-API-Key": key})
        assert resp.status_code == 200, (path, params)
        seen += 1
    assert seen > 20
    for path in ("/healthz", "/readyz"):
        api_schema[path]["GET"].Case().call_and_validate()


def test_every_operation_documents_examples_for_every_error(client):
    doc = client.get("/openapi.json").json()
    data_paths = [p for p in PATHS if "campaign" in p]
    assert len(data_paths) == 5 and all(p in doc["paths"] for p in data_paths)
    for p in data_paths:
        responses = doc["paths"][p]["get"]["responses"]
        for status in ("200", "304", "401", "403", "404", "422", "500"):
            assert status in responses, (p, status)
        for status in ("200", "401", "403", "404", "422", "500"):
            content = responses[status]["content"]["application/json"]
            assert content.get("examples"), (p, status)
    assert get(client, "/docs", key=None).status_code == 200
