"""The extra views' OpenAPI: schema fuzz (no 5xx, answers on schema) and real payloads
validated against the documented models, over the extra scenario database."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.api import test_extra_views as views_tests
from tests.api.conftest import ALPHA_ALL, ALPHA_ANALYTICS, ALPHA_CAMPAIGNS, BETA_NO_PII
from tests.api.test_extra_views import BETA_CID, RETRY_CID, RETRY_RUN

# The scenario database and its client, shared with test_extra_views.
events = views_tests.events
ref = views_tests.ref
extra_reader = views_tests.extra_reader
xc = views_tests.xc

EXTRA_PATHS = [
    "/v1/campaigns",
    "/v1/campaign/{campaign_id}/stats",
    "/v1/campaign/{campaign_id}/metrics",
    "/v1/campaign/{campaign_id}/summary",
    "/v1/campaign/{campaign_id}/execution",
    "/v1/campaign/{campaign_id}/runs",
    "/v1/campaign/{campaign_id}/batches",
    "/v1/campaign/{campaign_id}/runs/{run_id}/recipients",
]


@pytest.fixture
def xschema(xc):
    return schemathesis.openapi.from_asgi("/openapi.json", xc.app)


def test_extra_operations_are_documented(xschema):
    paths = {r.ok().path for r in xschema.get_all_operations()}
    assert set(EXTRA_PATHS) <= paths


@pytest.mark.parametrize("path", EXTRA_PATHS)
@pytest.mark.parametrize("key", [ALPHA_ALL, ALPHA_CAMPAIGNS, ALPHA_ANALYTICS])
def test_fuzz_extra_no_server_error_and_on_schema(xschema, path, key):
    operation = xschema[path]["GET"]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    def check(case):
        case.call_and_validate(
            headers={"X-API-Key": key},
            excluded_checks=[schemathesis.checks.positive_data_acceptance],
        )

    check()


def _known(ref_):
    yield "/v1/campaigns", {}, {"limit": "200"}, ALPHA_ALL, {}
    for cid, ws in sorted(ref_.workspace.items()):
        if ws != "ws_alpha":
            continue
        for path in EXTRA_PATHS[1:6]:
            yield path, {"campaign_id": cid}, {}, ALPHA_ALL, {}
        yield EXTRA_PATHS[6], {"campaign_id": cid}, {"limit": "200"}, ALPHA_ALL, {}
        for rid in ref_.runs_of(cid):
            yield EXTRA_PATHS[7], {"campaign_id": cid, "run_id": rid}, {"limit": "200"}, \
                ALPHA_ALL, {}
    yield (EXTRA_PATHS[7], {"campaign_id": RETRY_CID, "run_id": RETRY_RUN}, {}, ALPHA_ALL,
           {"Accept": "text/csv"})
    yield (EXTRA_PATHS[7], {"campaign_id": BETA_CID, "run_id": "run_beta"}, {}, BETA_NO_PII, {})


def test_real_extra_payloads_validate_against_the_models(xschema, ref):
    seen = 0
    for path, params, query, key, headers in _known(ref):
        case = xschema[path]["GET"].Case(path_parameters=params, query=query)
        resp = case.call_and_validate(headers={"X-API-Key": key, **headers})
        assert resp.status_code == 200, (path, params, resp.text)
        seen += 1
    assert seen > 30


def test_every_extra_operation_documents_examples(xc):
    doc = xc.get("/openapi.json").json()
    for path in EXTRA_PATHS:
        responses = doc["paths"][path]["get"]["responses"]
        for status in ("200", "304", "401", "403", "404", "422", "500"):
            assert status in responses, (path, status)
        for status in ("200", "401", "403", "404", "422", "500"):
            assert responses[status]["content"]["application/json"].get("examples"), (
                path, status)
    recipients = doc["paths"][EXTRA_PATHS[7]]["get"]["responses"]["200"]["content"]
    assert "text/csv" in recipients
