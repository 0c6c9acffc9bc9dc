"""Auth, tenancy, PII, methods, key hygiene and limits over every route of the app.

Routes are discovered from ``app.routes`` (through included routers), so a
route added later is covered without touching this file. Every route that is
not explicitly public (health, OpenAPI/docs, the static dashboard shell) must:

- answer 401 without a key or with an unknown key,
- answer 403 ``FORBIDDEN`` to a key of another workspace, with no data and
  nothing of the campaign (name, workspace, runs, phone numbers) in the body,
- answer 403 ``INSUFFICIENT_SCOPE`` to an owner key without scopes,
- never show a seeded phone number to a key without ``pii:read``,
- answer 405 in the envelope (with ``Allow``) to every unsupported method.

Public routes must carry none of that data without a key. Responses are read
from a real uvicorn server with a bounded streaming read, so event streams
are covered too. Keys never appear in logs (every logger at DEBUG), response
bodies or headers. The size and rate limits answer 413/414/431 and 429 with
``Retry-After`` in the envelope.
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.errors import ReadStoreError
from api.keys import KeyRing
from api.limits import Limits, LimitsMiddleware, RateLimiter
from api.readstore import ReadStore
from api.server import build_uvicorn_server, read_only_status
from projector.intake.metrics import Metrics
from tests.api.conftest import BIG_CID, BIG_RUN, all_events

ALL = ["campaigns:read", "analytics:read", "pii:read"]
NO_PII = ["campaigns:read", "analytics:read"]


def _key(role: str) -> str:
    return f"sec-{role}-{secrets.token_hex(12)}"


# role -> (key, workspace, scopes); fresh random keys, so a hit in a log is ours.
ROLES: dict[str, tuple[str, str, list[str]]] = {
    "alpha_all": (_key("alpha-all"), "ws_alpha", ALL),
    "alpha_nopii": (_key("alpha-nopii"), "ws_alpha", NO_PII),
    "alpha_campaigns": (_key("alpha-campaigns"), "ws_alpha", ["campaigns:read"]),
    "alpha_analytics": (_key("alpha-analytics"), "ws_alpha", ["analytics:read"]),
    "alpha_none": (_key("alpha-none"), "ws_alpha", []),
    "beta_all": (_key("beta-all"), "ws_beta", ALL),
    "beta_nopii": (_key("beta-nopii"), "ws_beta", NO_PII),
    "beta_none": (_key("beta-none"), "ws_beta", []),
    "gamma_all": (_key("gamma-all"), "ws_gamma", ALL),
}
KEY = {role: k for role, (k, _, _) in ROLES.items()}
WORKSPACE_OF = {role: w for role, (_, w, _) in ROLES.items()}
SCOPES_OF = {role: set(s) for role, (_, _, s) in ROLES.items()}
INVALID_KEYS = [_key("unknown"), KEY["alpha_all"] + "x"]
EVERY_KEY = [*KEY.values(), *INVALID_KEYS]
KEYRING = KeyRing.from_dict(
    {"keys": [{"key": k, "workspace_id": w, "scopes": s} for k, w, s in ROLES.values()]}
)
OPEN_LIMITS = Limits(rate=1e6, burst=10**6, anon_rate=1e6, anon_burst=10**6)

# Routes that need no key and must serve no tenant data (prefix match on the template).
PUBLIC = ("/healthz", "/readyz", "/metrics", "/v1/cluster", "/openapi.json", "/docs", "/ui")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


# -- the seeded data --------------------------------------------------------------------
def _phones(events: list[Any]) -> set[str]:
    found: set[str] = set()

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key in ("phone_number", "recipients"):
            found.add(value)

    for e in events:
        walk(e.model_dump(mode="json"))
    return found


EVENTS = all_events()
PHONES = _phones(EVENTS)
_PHONE_LIKE = re.compile(r"\d{9,15}")


@dataclass(frozen=True)
class Target:
    """A seeded campaign and one of its runs, with what must not leak about it."""

    campaign_id: str
    run_id: str
    workspace: str
    secrets: frozenset[str]  # values of the campaign never shown to another workspace

    @property
    def public_secrets(self) -> frozenset[str]:
        # Workspace ids are generic words the documentation's examples use too.
        return self.secrets - {self.workspace}


def _target(campaign_id: str, run_id: str) -> Target:
    mine = [e for e in EVENTS if e.campaign_id == campaign_id]
    names = {e.name for e in mine if e.type == "campaign.defined"}
    runs = {getattr(e, "run_id", None) for e in mine} - {None, run_id}
    phones = _phones(mine)
    return Target(campaign_id, run_id, mine[0].workspace_id,
                  frozenset({*names, mine[0].workspace_id, *runs, *phones}))


def _snapshot_target(workspace: str) -> Target:
    snap = next(e for e in EVENTS
                if e.type == "run.snapshot_frozen" and e.recipients and e.workspace_id == workspace)
    return _target(snap.campaign_id, snap.run_id)


TARGETS = [_snapshot_target("ws_alpha"), _snapshot_target("ws_beta"), _target(BIG_CID, BIG_RUN)]


# -- routes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RouteInfo:
    template: str
    methods: frozenset[str]
    params: tuple[str, ...]
    query: tuple[str, ...]

    @property
    def public(self) -> bool:
        return self.template.startswith(PUBLIC)

    def url(self, target: Target, query: str = "") -> str:
        values = {"campaign_id": target.campaign_id, "run_id": target.run_id}
        path = self.template
        for p in self.params:
            path = path.replace("{" + p + "}", values.get(p, "x"), 1)
            path = re.sub(r"\{" + p + r":[^}]*\}", values.get(p, "x"), path)
        return path + query


def _flat(routes: list[Any]) -> Iterator[Any]:
    for r in routes:
        if hasattr(r, "effective_route_contexts"):  # FastAPI's included routers
            for ctx in r.effective_route_contexts():
                yield ctx.starlette_route or ctx.original_route
        elif hasattr(r, "routes") and not hasattr(r, "methods"):  # Mount
            yield from _flat(r.routes)
        else:
            yield r


def discover(app: Any) -> list[RouteInfo]:
    out = []
    for r in _flat(app.routes):
        methods = getattr(r, "methods", None)
        if not methods:
            continue  # websocket or mount without routes
        dependant = getattr(r, "dependant", None)
        query = tuple(q.name for q in dependant.query_params) if dependant is not None else ()
        out.append(RouteInfo(r.path, frozenset(methods), tuple(r.param_convertors), query))
    return out


# -- a real server ----------------------------------------------------------------------
@dataclass
class Resp:
    status_code: int
    headers: httpx.Headers
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, app: Any) -> None:
        self.port = _free_port()
        self.server = build_uvicorn_server(app, "127.0.0.1", self.port)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.base, timeout=httpx.Timeout(10, read=2))
        self.responses = 0

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.client.get("/healthz").status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("server did not start")

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def fetch(self, method: str, url: str, key: str | None = None, *,
              key_in_query: bool = False, max_bytes: int = 2 << 20) -> Resp:
        """One request; the body is read until its end, an event's end, 2 MiB or 2 s."""
        headers = {}
        if key is not None and not key_in_query:
            headers["X-API-Key"] = key
        params = {"api_key": key} if key is not None and key_in_query else None
        body = b""
        with self.client.stream(method, url, headers=headers, params=params) as r:
            stream = "text/event-stream" in r.headers.get("content-type", "")
            deadline = time.monotonic() + 2
            try:
                for chunk in r.iter_raw():
                    body += chunk
                    if len(body) > max_bytes or time.monotonic() > deadline:
                        break
                    if stream and b"\n\n" in body:
                        break  # a whole event: enough to see what a stream shows
            except httpx.ReadTimeout:
                pass
        self.responses += 1
        resp = Resp(r.status_code, r.headers, body)
        assert_no_key_in(resp)
        return resp


def assert_no_key_in(resp: Resp) -> None:
    everything = resp.text + "\n" + "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
    for key in EVERY_KEY:
        assert key not in everything, "an API key was echoed in a response"


@pytest.fixture(scope="module")
def reader(db_file: Path) -> Iterator[ReadStore]:
    r = ReadStore.open_file(db_file)
    yield r
    r.close()


@pytest.fixture(scope="module")
def app(reader: ReadStore) -> Any:
    snapshot = read_only_status(reader)
    return create_app(reader, keys=KEYRING, status=lambda: snapshot, metrics=Metrics(),
                      limits=OPEN_LIMITS)


@pytest.fixture(scope="module")
def server(app: Any) -> Iterator[Server]:
    with Server(app) as s:
        yield s


@pytest.fixture(scope="module")
def routes(app: Any) -> list[RouteInfo]:
    found = discover(app)
    templates = {r.template for r in found}
    # The discovery sees the known routes (so it would see new ones the same way).
    assert {"/v1/campaign/{campaign_id}/status", "/v1/campaign/{campaign_id}/runs/{run_id}",
            "/v1/campaign/{campaign_id}/runs/{run_id}/snapshot", "/healthz"} <= templates
    return found


def private(routes: list[RouteInfo]) -> list[RouteInfo]:
    return [r for r in routes if not r.public]


def queries(route: RouteInfo) -> list[str]:
    """The plain URL and the PII switch (harmless where the route ignores it)."""
    return ["", "?include_recipients=true"]


def assert_error(resp: Resp, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, (status, resp.status_code, resp.text[:300])
    body = resp.json()
    assert body["success"] is False and body["data"] is None, body
    assert [e["code"] for e in body["errors"]] == [code], body
    assert body["request_id"] == resp.headers["X-Request-ID"]
    assert "ETag" not in resp.headers and "X-Projection-Watermark" not in resp.headers
    return body


def assert_nothing_of(resp: Resp, target: Target, url: str, *, public: bool = False) -> None:
    text = resp.text.replace(url, "")
    leaked = sorted(s for s in (target.public_secrets if public else target.secrets) if s in text)
    assert not leaked, f"{url}: data of the campaign in a {resp.status_code} body: {leaked[:5]}"


def assert_no_phone(resp: Resp, url: str) -> None:
    seen = set(_PHONE_LIKE.findall(resp.text)) & PHONES
    assert not seen, f"{url}: phone numbers without pii:read: {sorted(seen)[:3]}"


def key_modes(route: RouteInfo) -> list[bool]:
    """Header always; the query string too where the route takes ``api_key`` (streams)."""
    return [False, True] if "api_key" in route.query else [False]


# -- authentication and tenancy ---------------------------------------------------------
def test_no_key_and_unknown_keys_get_401_everywhere(server, routes):
    checked = 0
    for route in private(routes):
        for target in TARGETS:
            for method in sorted(route.methods - {"HEAD"}):
                url = route.url(target)
                for key in (None, *INVALID_KEYS):
                    for in_query in key_modes(route) if key else [False]:
                        resp = server.fetch(method, url, key, key_in_query=in_query)
                        assert_error(resp, 401, "UNAUTHORIZED")
                        assert_nothing_of(resp, target, url)
                        checked += 1
    assert checked >= 5 * len(TARGETS) * 3


def test_other_workspace_gets_403_and_nothing_of_the_campaign(server, routes):
    checked = 0
    for route in private(routes):
        if "campaign_id" not in route.params:
            continue
        for target in TARGETS:
            foreign = [r for r in ("alpha_all", "beta_all", "gamma_all")
                       if WORKSPACE_OF[r] != target.workspace]
            for role in foreign:
                for q in queries(route):
                    for in_query in key_modes(route):
                        url = route.url(target, q)
                        resp = server.fetch("GET", url, KEY[role], key_in_query=in_query)
                        if resp.status_code == 403 and resp.json()["errors"][0]["code"] == (
                            "INSUFFICIENT_SCOPE"
                        ):
                            continue  # a scope this all-scopes key lacks: checked first
                        assert_error(resp, 403, "FORBIDDEN")
                        assert_nothing_of(resp, target, url)
                        assert_no_phone(resp, url)
                        checked += 1
    assert checked >= 5 * len(TARGETS) * 2


def methods_of(route: RouteInfo) -> list[str]:
    return sorted(route.methods - {"HEAD"})


def assert_scope_refused(resp: Resp, method: str) -> None:
    """403 INSUFFICIENT_SCOPE; a write whose (empty) body fails validation first may get 422."""
    if method != "GET" and resp.status_code == 422:
        assert_error(resp, 422, "VALIDATION_ERROR")
    else:
        assert_error(resp, 403, "INSUFFICIENT_SCOPE")


def test_owner_key_without_scopes_gets_403_everywhere(server, routes):
    for route in private(routes):
        for target in TARGETS:
            role = "alpha_none" if target.workspace == "ws_alpha" else "beta_none"
            for method in methods_of(route):
                for in_query in key_modes(route):
                    url = route.url(target)
                    resp = server.fetch(method, url, KEY[role], key_in_query=in_query)
                    assert_scope_refused(resp, method)
                    assert_nothing_of(resp, target, url)


def test_partial_scopes_get_403_or_data_and_full_keys_get_data(server, routes):
    """Each owner key answers 2xx/404 or 403 INSUFFICIENT_SCOPE; a full key never gets 403."""
    served: dict[str, int] = {}
    for route in private(routes):
        for target in TARGETS:
            ws = "alpha" if target.workspace == "ws_alpha" else "beta"
            for role in [r for r in ROLES if r.startswith(ws)]:
                for method in methods_of(route):
                    for q in queries(route):
                        url = route.url(target, q)
                        resp = server.fetch(method, url, KEY[role])
                        if resp.status_code in (403, 422):
                            # Full keys lack only scopes beyond data reading (e.g. admin).
                            assert_scope_refused(resp, method)
                        else:
                            assert resp.status_code in (200, 204, 304, 404), (url, role,
                                                                              resp.text)
                        if resp.status_code == 200 and SCOPES_OF[role] == set(ALL):
                            served[route.template] = served.get(route.template, 0) + 1
    # Every GET route whose parameters are known served data to a full key at least once.
    known = [r.template for r in private(routes)
             if "GET" in r.methods and set(r.params) <= {"campaign_id", "run_id"}]
    assert sorted(t for t in known if t not in served) == []


# Known gaps, each an xfail(strict) test below: fixing one makes that test fail until
# its entry is removed here.
PII_GAPS: set[str] = set()  # routes known to show phone numbers without pii:read


def _scan_phones(server: Server, routes: list[RouteInfo]) -> None:
    for route in routes:
        for target in TARGETS:
            for role in [r for r in ROLES if "pii:read" not in SCOPES_OF[r]] + [None]:
                for q in queries(route):
                    url = route.url(target, q)
                    resp = server.fetch("GET", url, KEY[role] if role else None)
                    assert_no_phone(resp, url)


def test_phone_numbers_only_with_pii_scope(server, routes):
    """Every body of every route, for every key without pii:read, holds no seeded phone."""
    _scan_phones(server, [r for r in routes if r.template not in PII_GAPS])




def test_pii_scope_does_show_phone_numbers(server):
    """The scan above would pass vacuously if phones were never shown: show they are."""
    target = TARGETS[1]
    url = f"/v1/campaign/{target.campaign_id}/runs/{target.run_id}/snapshot?include_recipients=true"
    resp = server.fetch("GET", url, KEY["beta_all"])
    assert resp.status_code == 200
    assert set(_PHONE_LIKE.findall(resp.text)) & PHONES


def test_public_routes_carry_no_tenant_data(server, routes):
    for route in routes:
        if not route.public:
            continue
        for target in TARGETS:
            url = route.url(target)
            resp = server.fetch("GET", url)
            assert resp.status_code < 500
            assert_nothing_of(resp, target, url, public=True)
            assert_no_phone(resp, url)


def test_unsupported_methods_get_405_in_the_envelope(server, routes):
    checked = 0
    for route in routes:
        for method in METHODS:
            if method in route.methods:
                continue
            for key in (None, KEY["alpha_all"]):
                resp = server.fetch(method, route.url(TARGETS[0]), key)
                if method == "HEAD":  # no body by definition
                    assert resp.status_code == 405 and resp.body == b""
                else:
                    assert_error(resp, 405, "METHOD_NOT_ALLOWED")
                allowed = {m.strip() for m in resp.headers["Allow"].split(",")}
                assert allowed == set(route.methods), (route.template, method)
                checked += 1
    assert checked >= len(routes) * 4


# -- keys never logged ------------------------------------------------------------------
# The test's own HTTP client logs its requests; the property is about the server.
CLIENT_LOGGERS = ("httpx", "httpcore", "hpack")


def _assert_no_key_logged(records: list[logging.LogRecord]) -> int:
    seen = 0
    for rec in records:
        if rec.name.startswith(CLIENT_LOGGERS):
            continue
        seen += 1
        parts = [rec.getMessage(), repr(rec.args), str(rec.__dict__)]
        if rec.exc_info:
            parts.append(logging.Formatter().formatException(rec.exc_info))
        if rec.stack_info:
            parts.append(rec.stack_info)
        text = "\n".join(parts)
        for key in EVERY_KEY:
            assert key not in text, f"API key in a log record of {rec.name}: {rec.getMessage()}"
    return seen


def _log_all_requests(server: Server, routes: list[RouteInfo], caplog: Any,
                      in_query: bool) -> list[logging.LogRecord]:
    """Every route with every key (valid, invalid, foreign, scope-less), bad input too.

    Every logger at DEBUG; the access logger has a handler under pytest, as it
    would under an operator's logging configuration.
    """
    caplog.set_level(logging.DEBUG)
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "api", "projector"):
        caplog.set_level(logging.DEBUG, logger=name)
    for route in routes:
        if in_query and "api_key" not in route.query:
            continue
        for target in TARGETS[:1]:
            for key in EVERY_KEY + ([None] if not in_query else []):
                server.fetch("GET", route.url(target, "?include_recipients=maybe"), key,
                             key_in_query=in_query)
                server.fetch("GET", route.url(target), key, key_in_query=in_query)
            server.fetch("POST", route.url(target), KEY["alpha_all"], key_in_query=in_query)
    assert caplog.records
    return caplog.records


def test_keys_never_appear_in_logs(server, routes, caplog):
    _assert_no_key_logged(_log_all_requests(server, routes, caplog, in_query=False))


def test_keys_in_the_query_never_appear_in_logs(server, routes, caplog):
    if not any("api_key" in r.query for r in routes):
        pytest.skip("no route takes a key in the query string")
    _assert_no_key_logged(_log_all_requests(server, routes, caplog, in_query=True))


class _BrokenReader:
    """Every read fails: the server-error paths log (with tracebacks)."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            if name == "campaign_heads":
                raise RuntimeError("boom: unexpected failure")
            raise ReadStoreError("read failed: disk on fire")

        return fail


def test_keys_never_appear_in_server_error_logs_or_bodies(routes, reader, caplog):
    caplog.set_level(logging.DEBUG)
    snapshot = read_only_status(reader)
    app = create_app(_BrokenReader(), keys=KEYRING, status=lambda: snapshot,  # type: ignore[arg-type]
                     metrics=Metrics(), limits=OPEN_LIMITS)
    errors = 0
    with TestClient(app, raise_server_exceptions=False) as client:
        for route in private(routes):
            for key in EVERY_KEY:
                if "stream" in route.template:
                    continue  # a broken reader inside a stream never ends in TestClient
                resp = client.get(route.url(TARGETS[0]), headers={"X-API-Key": key})
                assert_no_key_in(Resp(resp.status_code, resp.headers, resp.content))
                if resp.status_code == 500:
                    assert_error(Resp(resp.status_code, resp.headers, resp.content), 500,
                                 "INTERNAL_ERROR")
                    errors += 1
    assert errors > 0
    assert any(r.levelno >= logging.ERROR for r in caplog.records)
    _assert_no_key_logged(caplog.records)


# -- size limits ------------------------------------------------------------------------
@pytest.fixture
def limited(reader: ReadStore) -> Iterator[TestClient]:
    snapshot = read_only_status(reader)
    app = create_app(reader, keys=KEYRING, status=lambda: snapshot, metrics=Metrics(),
                     limits=Limits(rate=2.0, burst=5, anon_rate=2.0, anon_burst=3))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _resp(r: httpx.Response) -> Resp:
    return Resp(r.status_code, r.headers, r.content)


def test_request_size_limits(server):
    url = f"/v1/campaign/{BIG_CID}/status"
    key = {"X-API-Key": KEY["alpha_all"]}
    with httpx.Client(base_url=server.base, timeout=10) as c:
        r = c.request("GET", url, headers=key, content=b"x" * (64 * 1024 + 1))
        assert_error(_resp(r), 413, "PAYLOAD_TOO_LARGE")
        r = c.request("POST", url, headers=key, content=b"{" * (1 << 20))
        assert_error(_resp(r), 413, "PAYLOAD_TOO_LARGE")
        r = c.request("GET", url, headers=key, content=b"x" * 1024)  # small bodies pass
        assert r.status_code == 200
        r = c.get(url + "?pad=" + "a" * 9000, headers=key)
        assert_error(_resp(r), 414, "URI_TOO_LONG")
        r = c.get(url, headers={**key, **{f"X-Pad-{i}": "b" * 1000 for i in range(20)}})
        assert_error(_resp(r), 431, "HEADERS_TOO_LARGE")
        # A huge key is refused before it is hashed, and not echoed.
        r = c.get(url, headers={"X-API-Key": "k" * 20000})
        assert_error(_resp(r), 431, "HEADERS_TOO_LARGE")


async def test_chunked_body_over_the_limit_is_cut_off():
    """A route that reads a chunked body is stopped at the limit with 413."""
    read: list[int] = []

    async def reader_app(scope, receive, send):
        total = 0
        while True:
            msg = await receive()
            total += len(msg.get("body", b""))
            read.append(total)
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = LimitsMiddleware(reader_app, keys=KEYRING, limits=Limits(max_body_bytes=1000))
    chunks = [{"type": "http.request", "body": b"x" * 400, "more_body": True}] * 10
    sent: list[dict[str, Any]] = []

    async def receive():
        return chunks.pop(0)

    async def send(msg):
        sent.append(msg)

    scope = {"type": "http", "method": "POST", "path": "/upload", "raw_path": b"/upload",
             "query_string": b"", "headers": [], "client": ("10.0.0.1", 1)}
    await mw(scope, receive, send)
    assert sent[0]["status"] == 413
    assert max(read) <= 1000 and len(chunks) == 7  # stopped after the third chunk


# -- rate limits ------------------------------------------------------------------------
def test_rate_limit_per_key_429_with_retry_after(limited):
    url = f"/v1/campaign/{BIG_CID}/status"
    alpha = {"X-API-Key": KEY["alpha_all"]}
    codes = [limited.get(url, headers=alpha).status_code for _ in range(5)]
    assert codes == [200] * 5
    r = limited.get(url, headers=alpha)
    body = assert_error(_resp(r), 429, "RATE_LIMITED")
    assert r.headers["Retry-After"].isdigit() and 1 <= int(r.headers["Retry-After"]) <= 1
    assert "retry" in body["errors"][0]["message"].lower()
    # Another key of the same workspace has its own bucket; health is never limited.
    assert limited.get(url, headers={"X-API-Key": KEY["alpha_nopii"]}).status_code == 200
    for path in ("/healthz", "/readyz", "/metrics", "/v1/cluster"):
        assert all(limited.get(path).status_code == 200 for _ in range(20))
    time.sleep(0.6)  # 2 tokens/s: one is back
    assert limited.get(url, headers=alpha).status_code == 200


def test_rate_limit_without_a_valid_key_is_per_client_address(limited):
    url = f"/v1/campaign/{BIG_CID}/status"
    # Made-up keys share the address's bucket: rotating keys does not help.
    codes = [limited.get(url, headers={"X-API-Key": _key("guess")}).status_code
             for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    assert limited.get(url).status_code == 429
    r = limited.get(url, headers={"X-API-Key": KEY["alpha_all"]})  # a valid key is not blocked
    assert r.status_code == 200


def test_rate_limit_reads_the_stream_key_from_the_query(limited):
    url = f"/v1/campaign/{BIG_CID}/status"
    for _ in range(5):
        assert limited.get(url, params={"api_key": KEY["alpha_all"]}).status_code == 401
    # Counted in the key's bucket (spent above), not the address's.
    assert limited.get(url, headers={"X-API-Key": KEY["alpha_all"]}).status_code == 429
    assert limited.get(url).status_code == 401


def test_rate_limiter_memory_is_bounded_and_retry_after_exact():
    now = [0.0]
    rl = RateLimiter(max_buckets=100, clock=lambda: now[0])
    assert [rl.take("a", 1.0, 2) for _ in range(2)] == [0.0, 0.0]
    assert rl.take("a", 1.0, 2) == pytest.approx(1.0)
    now[0] += 0.25
    assert rl.take("a", 1.0, 2) == pytest.approx(0.75)  # 0.25 back, 0.75 missing at 1/s
    for i in range(10_000):
        rl.take(("addr", i), 10.0, 5)
        assert len(rl) <= 100
    # Idle buckets that are full again are dropped as time passes.
    now[0] += 10
    for i in range(20):
        rl.take(("fresh", i), 10.0, 5)
    assert len(rl) < 100


def test_limits_reject_bad_settings():
    with pytest.raises(ValueError):
        Limits(rate=-1)
    with pytest.raises(ValueError):
        Limits(burst=0)
