"""Every error case: status, stable code, envelope, and no data leaked."""

from __future__ import annotations

import duckdb
import pytest

from api.readstore import ReadStore
from tests.api.conftest import (
    ALPHA_ALL,
    ALPHA_ANALYTICS,
    ALPHA_CAMPAIGNS,
    BETA_ALL,
    BETA_NO_PII,
    BIG_CID,
    BIG_RUN,
    GAMMA_ALL,
    get,
)
from tests.fixtures.golden import golden_events, golden_expected

GOLDEN = golden_expected()
ALPHA_CID = next(c for c, v in GOLDEN.items() if v["workspace_id"] == "ws_alpha" and v["runs"])
ALPHA_RUN = sorted(GOLDEN[ALPHA_CID]["runs"])[0]
BETA_CID = next(c for c, v in GOLDEN.items() if v["workspace_id"] == "ws_beta")
# A ws_beta run with a snapshot holding recipients (PII).
PII_EVENT = next(
    e for e in golden_events()
    if e.type == "run.snapshot_frozen" and e.recipients and e.workspace_id == "ws_beta"
)


def endpoints(cid: str, rid: str) -> list[str]:
    return [
        f"/v1/campaign/{cid}/status",
        f"/campaigns/{cid}/status",
        f"/v1/campaign/{cid}/analytics",
        f"/v1/campaign/{cid}/runs/{rid}",
        f"/v1/campaign/{cid}/runs/{rid}/snapshot",
        f"/v1/campaign/{cid}/runs/{rid}/snapshot?include_recipients=true",
    ]


def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is False
    assert body["data"] is None
    assert [e["code"] for e in body["errors"]] == [code]
    assert body["errors"][0]["message"]
    assert body["request_id"] == resp.headers["X-Request-ID"]
    # Errors carry no freshness or cache validators: nothing about the campaign.
    assert "ETag" not in resp.headers and "X-Projection-Watermark" not in resp.headers
    return body


@pytest.mark.parametrize("path", endpoints(ALPHA_CID, ALPHA_RUN))
def test_401_without_key(client, path):
    assert_error(get(client, path, key=None), 401, "UNAUTHORIZED")


@pytest.mark.parametrize("path", endpoints(ALPHA_CID, ALPHA_RUN))
@pytest.mark.parametrize("bad", ["wrong-key-0123456789", ALPHA_ALL + "x", ""])
def test_401_with_invalid_key(client, path, bad):
    body = assert_error(get(client, path, key=bad), 401, "UNAUTHORIZED")
    assert bad == "" or bad not in str(body)  # never echo a key


@pytest.mark.parametrize("path", endpoints(ALPHA_CID, ALPHA_RUN))
@pytest.mark.parametrize("foreign", [BETA_ALL, GAMMA_ALL])
def test_403_foreign_workspace_reveals_nothing(client, path, foreign):
    resp = get(client, path, key=foreign)
    body = assert_error(resp, 403, "FORBIDDEN")
    text = resp.text
    for secret in ("ws_alpha", ALPHA_RUN, "campaign_name", "recipient", "2557"):
        assert secret not in text.replace(path, ""), secret
    assert body["data"] is None


def test_403_foreign_workspace_on_beta_campaign(client):
    for path in endpoints(BETA_CID, sorted(GOLDEN[BETA_CID]["runs"])[0]):
        assert_error(get(client, path, key=ALPHA_ALL), 403, "FORBIDDEN")


@pytest.mark.parametrize(
    ("key", "path"),
    [
        (ALPHA_ANALYTICS, f"/v1/campaign/{ALPHA_CID}/status"),
        (ALPHA_ANALYTICS, f"/campaigns/{ALPHA_CID}/status"),
        (ALPHA_ANALYTICS, f"/v1/campaign/{ALPHA_CID}/runs/{ALPHA_RUN}"),
        (ALPHA_ANALYTICS, f"/v1/campaign/{ALPHA_CID}/runs/{ALPHA_RUN}/snapshot"),
        (ALPHA_CAMPAIGNS, f"/v1/campaign/{ALPHA_CID}/analytics"),
        (ALPHA_CAMPAIGNS, f"/v1/campaign/{ALPHA_CID}/runs/{ALPHA_RUN}/snapshot"
                          "?include_recipients=true"),
    ],
)
def test_403_missing_scope(client, key, path):
    body = assert_error(get(client, path, key=key), 403, "INSUFFICIENT_SCOPE")
    assert ":read" in body["errors"][0]["message"]


def test_scope_is_checked_before_existence(client):
    # A key without the scope learns nothing, not even whether the campaign exists.
    resp = get(client, "/v1/campaign/nope/analytics", key=ALPHA_CAMPAIGNS)
    assert_error(resp, 403, "INSUFFICIENT_SCOPE")


def test_pii_only_with_pii_scope(client):
    cid, rid = PII_EVENT.campaign_id, PII_EVENT.run_id
    base = f"/v1/campaign/{cid}/runs/{rid}/snapshot"
    phones = list(PII_EVENT.recipients)

    resp = get(client, base + "?include_recipients=true", key=BETA_NO_PII)
    assert_error(resp, 403, "INSUFFICIENT_SCOPE")
    assert not any(p in resp.text for p in phones)

    for key in (BETA_NO_PII, BETA_ALL):
        for query in ("", "?include_recipients=false"):
            resp = get(client, base + query, key=key)
            assert resp.status_code == 200
            assert "recipients" not in resp.json()["data"]
            assert not any(p in resp.text for p in phones)

    resp = get(client, base + "?include_recipients=true", key=BETA_ALL)
    assert resp.status_code == 200
    assert resp.json()["data"]["recipients"] == phones


def test_404_unknown_campaign(client):
    for path in endpoints("00000000-0000-4000-8000-000000000000", "run_x")[:-1]:
        assert_error(get(client, path), 404, "CAMPAIGN_NOT_FOUND")


def test_404_unknown_campaign_with_key_of_a_workspace_owning_nothing(client):
    # Existence first, as the reference documents: an unknown id is 404 for any valid key.
    assert_error(get(client, "/v1/campaign/unknown/status", key=GAMMA_ALL), 404,
                 "CAMPAIGN_NOT_FOUND")


def test_404_run_not_of_that_campaign(client):
    # BIG_RUN exists, in another campaign of the same workspace.
    assert_error(get(client, f"/v1/campaign/{ALPHA_CID}/runs/{BIG_RUN}"), 404, "RUN_NOT_FOUND")
    assert_error(get(client, f"/v1/campaign/{ALPHA_CID}/runs/{BIG_RUN}/snapshot"), 404,
                 "RUN_NOT_FOUND")
    assert_error(get(client, f"/v1/campaign/{ALPHA_CID}/runs/run_nope"), 404, "RUN_NOT_FOUND")


def test_404_before_any_snapshot(client):
    assert_error(get(client, f"/v1/campaign/{BIG_CID}/runs/{BIG_RUN}/snapshot"), 404,
                 "SNAPSHOT_NOT_FOUND")


def test_404_unknown_route_uses_the_envelope(client):
    assert_error(get(client, "/v1/nothing/here"), 404, "NOT_FOUND")


def test_405_keeps_allow_header(client):
    resp = client.post(f"/v1/campaign/{ALPHA_CID}/status", headers={"X-API-Key": ALPHA_ALL})
    assert_error(resp, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in resp.headers["Allow"]


@pytest.mark.parametrize("value", ["maybe", "2", "truee", ""])
def test_422_bad_include_recipients(client, value):
    path = f"/v1/campaign/{ALPHA_CID}/runs/{ALPHA_RUN}/snapshot?include_recipients={value}"
    body = assert_error(get(client, path), 422, "VALIDATION_ERROR")
    assert "include_recipients" in body["errors"][0]["message"]


def test_500_from_the_store_says_nothing_internal(make_client):
    def broken():
        raise duckdb.IOException("IO Error: /secret/path/projector.duckdb is corrupt")

    client = make_client(reader=ReadStore(broken))
    resp = get(client, f"/v1/campaign/{ALPHA_CID}/status")
    body = assert_error(resp, 500, "INTERNAL_ERROR")
    assert "secret" not in resp.text and "duckdb" not in resp.text.lower()
    assert body["errors"][0]["message"] == "Internal server error; safe to retry with backoff."


def test_500_from_an_unexpected_bug_says_nothing_internal(make_client):
    class Exploding(ReadStore):
        def campaign(self, campaign_id):
            raise RuntimeError("bug with internal detail")

    client = make_client(reader=Exploding(lambda: None))
    resp = get(client, f"/v1/campaign/{ALPHA_CID}/status", **{"X-Request-ID": "trace-42"})
    body = assert_error(resp, 500, "INTERNAL_ERROR")
    assert "internal detail" not in resp.text
    assert body["request_id"] == "trace-42"
