"""The dashboard end to end: ``projector serve``, a simulated run, headless Chromium.

Chromium is Debian's ``chromium`` package (``/usr/bin/chromium``), driven by
Playwright's Python package with ``executable_path`` (``playwright install``
is never needed). Without either, the browser test is skipped with the
reason; the page routes are checked without a browser anyway.

The test loads ``/ui/campaigns/{id}`` while the simulator's events flow
through the broker into ``projector serve``, enters the key once, and sees
the counters change without a reload (the page keeps a marker that a reload
would wipe). Then it opens the page again on the completed run, as a newcomer
would after the fact: the timeline is drawn from ``/timeline`` (not from what
the page saw of the stream), failure reasons and latency stand beside it, and
the recipient table pages past recipient 500 and filters by status. It saves
a screenshot of that page in its temporary folder,
or where ``DASHBOARD_SCREENSHOT`` says: ``make screenshot`` uses that to
refresh ``docs/dashboard.png`` on purpose (a test run never writes there).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.keys import KNOWN_SCOPES
from projector.settings import Topics
from projector.tools.emit import EventEmitter
from projector.tools.simulate import WORKSPACES, generate
from tests.fixtures.processes import Procs, projector_env, start_serve
from tests.fixtures.waiting import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
# Where the final page is saved, when not in the test's temporary folder (`make screenshot`).
SCREENSHOT_ENV = "DASHBOARD_SCREENSHOT"
RECIPIENTS = 1500
RATE = 250  # events per second: a run of ~10 s, long enough to watch
TERMINAL = {"run.completed", "run.failed", "run.cancelled"}


# -- the pages, without a browser ------------------------------------------------


def test_pages_and_assets_are_served(client: TestClient) -> None:
    for path in ("/ui/", "/ui/campaigns/some-id"):
        r = client.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert '<script src="/ui/static/app.js">' in r.text
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
    js = client.get("/ui/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "sessionStorage" in js.text and "X-API-Key" in js.text
    assert client.get("/ui/static/app.css").headers["content-type"].startswith("text/css")
    # The charting library ships as static files (no build step), from our own origin,
    # which is all the CSP lets a page load.
    page = client.get("/ui/").text
    for asset, kind in (("vendor/uPlot.iife.min.js", "text/javascript"),
                        ("vendor/uPlot.min.css", "text/css")):
        assert f'"/ui/static/{asset}"' in page, asset
        r = client.get("/ui/static/" + asset)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), asset
        assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "uPlot" in client.get("/ui/static/vendor/uPlot.iife.min.js").text
    for bad in ("/ui/static/index.html", "/ui/static/..%2Fapp.py", "/ui/static/nope.js",
                "/ui/static/vendor/uPlot.LICENSE", "/ui/static/vendor/..%2Fapp.js",
                "/ui/static/vendor/"):
        assert client.get(bad).status_code == 404, bad


@pytest.fixture
def client() -> TestClient:
    from api.app import create_app
    from api.keys import KeyRing
    from projector.intake.health import PipelineSnapshot
    from projector.intake.metrics import Metrics

    snap = PipelineSnapshot("read-only", True, {}, {}, {}, 0, 0, None)
    app = create_app(None, keys=KeyRing.from_dict({"keys": []}),  # type: ignore[arg-type]
                     status=lambda: snap, metrics=Metrics())
    return TestClient(app)


# -- the browser ------------------------------------------------------------------


def _one_run() -> tuple[str, str, list[dict[str, Any]], list[dict[str, Any]]]:
    """A campaign whose first run completes in two batches: the events up to that run's
    end, and the run's delivery reports that come after it (the long tail)."""
    for seed in range(1, 60):
        events: list[dict[str, Any]] = []
        stream = generate(1, RECIPIENTS, seed)
        for e in stream:
            events.append(e)
            if e["type"] in TERMINAL:
                break
        if events[-1]["type"] == "run.completed":
            run_id = events[-1]["run_id"]
            late = [e for e in stream if e["type"] == "message.dlr" and e["run_id"] == run_id]
            return events[0]["campaign_id"], events[0]["workspace_id"], events, late
    raise AssertionError("no seed gives a completed run")


def _emit(bootstrap: str, topics: Topics, events: list[dict[str, Any]], start: threading.Event,
          errors: list[BaseException]) -> None:
    async def go() -> None:
        async with EventEmitter(bootstrap, topics) as em:
            await em.emit_many(events[:20])  # the campaign and its run exist first
            await em.flush()
            start.wait(60)
            step = RATE // 10
            for i in range(20, len(events), step):
                await em.emit_many(events[i : i + step])
                await em.flush()
                await asyncio.sleep(0.1)

    try:
        asyncio.run(go())
    except BaseException as e:  # reported by the test
        errors.append(e)


def _number(text: str) -> int | None:
    digits = text.replace(",", "").replace("\u202f", "").replace(" ", "").strip()
    return int(digits) if digits.isdigit() else None


def _points(page: Any) -> int:
    """How many points the chart holds (the page keeps the count on #chart)."""
    return int(page.get_attribute("#chart", "data-points") or 0)


def _reasons(events: list[dict[str, Any]]) -> set[str]:
    return {e["reason"] for e in events
            if e["type"] == "message.submitted" and e.get("reason")}


def _page_past_500(page: Any, until: Callable[..., None], want: list[dict[str, Any]]) -> None:
    """Next, page by page, to page 21 (recipients 501-525): the API's page at offset 500."""
    until("the first page", lambda: page.inner_text("#recipients-pager span") == "page 1 of 60")
    for n in range(2, 22):
        page.click("#recipients-pager button[data-step='1']")
        until(f"page {n}", lambda n=n: page.inner_text("#recipients-pager span")
              == f"page {n} of 60")
    until("recipients 501-525", lambda: page.locator(
        "#recipients tbody tr td:first-child").all_inner_texts() == [r["recipient_id"]
                                                                      for r in want])


@pytest.mark.timeout(300)
def test_dashboard_shows_a_live_run_in_headless_chromium(
    bootstrap: str, topics_factory: Callable[..., Topics], procs: Procs, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install "
                    "chromium fonts-liberation) to run the dashboard browser test")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )

    topics = topics_factory(partitions=4)
    keys = {ws: f"dash-key-{ws}-0123456789" for ws in WORKSPACES}
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [
        {"key": k, "workspace_id": ws, "scopes": sorted(KNOWN_SCOPES)} for ws, k in keys.items()
    ]}))
    env = projector_env(bootstrap, topics, flush_max_events=200, flush_interval_ms=100)
    _, port, died = start_serve(procs, env, tmp_path / "p.duckdb", tmp_path / "keys.json")
    base = f"http://127.0.0.1:{port}"

    def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
        return wait_until(what, check, timeout, died)

    wait_for("/readyz 200", lambda: httpx.get(base + "/readyz").status_code == 200, 60)
    cid, ws, events, late = _one_run()
    key = keys[ws]
    start, errors = threading.Event(), []
    emitter = threading.Thread(target=_emit, args=(bootstrap, topics, events, start, errors),
                               daemon=True)
    emitter.start()
    status_url = f"{base}/v1/campaign/{cid}/status"
    wait_for("the campaign's first status", lambda: httpx.get(
        status_url, headers={"X-API-Key": key}).status_code == 200, 60)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        # The page's CSP forbids eval, so waits poll from Python (no wait_for_function).
        page = browser.new_page(viewport={"width": 1200, "height": 900})

        def until(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
            wait_until(what, check, timeout)

        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))

        # The list page: the campaign list when the API has it, else the id form.
        page.goto(base + "/ui/")
        page.fill("#key-input", key)
        page.click("#key-form button")
        page.wait_for_selector("#key-state:not([hidden])")
        until("the list or its note", lambda: page.is_visible("#list-note")
              or page.locator("#campaigns tbody tr").count() > 0)
        rows = page.inner_text("#campaigns tbody") if page.is_visible("#campaigns") else ""
        assert cid in rows or "type a campaign id" in page.inner_text("#list-note"), rows

        # The campaign page: the key was kept in the session.
        page.goto(f"{base}/ui/campaigns/{cid}")
        page.wait_for_selector("#key-state:not([hidden])")
        page.evaluate("window.__noReload = 'marker'")
        until("the stream to be live", lambda: page.inner_text("#c-live") == "live")
        start.set()  # now the run goes on while the page watches
        until("a sent count", lambda: _number(page.inner_text("#n-sent")) is not None)
        seen = [_number(page.inner_text("#n-sent"))]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            sent = _number(page.inner_text("#n-sent"))
            if sent != seen[-1]:
                seen.append(sent)
            if page.inner_text("#c-live") == "final":
                break
            time.sleep(0.2)
        assert page.evaluate("window.__noReload") == "marker", "the page was reloaded"
        assert len(seen) >= 3, f"counters did not move live: {seen}"
        assert seen == sorted(seen), seen

        # The final state equals the API's status; tables and chart are drawn.
        final = httpx.get(status_url, headers={"X-API-Key": key}).json()["data"]
        assert page.inner_text("#c-status") == final["status"] == "completed"
        assert _number(page.inner_text("#n-sent")) == final["sent"]
        assert _number(page.inner_text("#n-failed")) == final["failed"]
        assert page.inner_text("#c-batches") == f"{final['total_batches']} / " \
                                                f"{final['total_batches']} batches"
        until("the batches", lambda: page.locator("#batches tbody tr").count() >= 2)
        until("a page of recipients", lambda: page.locator("#recipients tbody tr").count() == 25)
        until("the delivery rate", lambda: "%" in page.inner_text("#r-delivery"))
        # The last refresh of the run detail follows the final payload.
        until("the run detail of the final payload", lambda: (
            "delivered " + page.inner_text("#n-delivered") + " ·") in page.inner_text(
            "#recipients-note"))
        until("the live chart", lambda: _points(page) > 1)
        first_page = page.inner_text("#recipients tbody")
        page.click("#recipients-pager button[data-step='1']")
        until("page 2", lambda: page.inner_text("#recipients-pager span") == "page 2 of 60")
        assert page.inner_text("#recipients tbody") != first_page

        # The run's late delivery reports, then the completed run opened afresh:
        # nothing seen live, all read on load.
        emitter.join(30)
        sent_late = threading.Event()
        sent_late.set()
        emitter = threading.Thread(target=_emit, args=(bootstrap, topics, late, sent_late,
                                                       errors), daemon=True)
        emitter.start()
        delivered = sum(e["status"] == "delivered" for e in events + late
                        if e["type"] == "message.dlr")
        wait_for("the late delivery reports", lambda: httpx.get(
            status_url, headers={"X-API-Key": key}).json()["data"]["delivered"] == delivered, 60)
        final = httpx.get(status_url, headers={"X-API-Key": key}).json()["data"]
        # The page still open after the stream's end re-reads the status now and then.
        until("the open page to follow the late reports",
              lambda: _number(page.inner_text("#n-delivered")) == delivered, 30)
        page.goto(f"{base}/ui/campaigns/{cid}")
        until("the final payload", lambda: page.inner_text("#c-live") == "final")
        until("a drawn timeline", lambda: _points(page) > 1)
        assert page.locator("#chart canvas").count() == 1  # uPlot's
        assert page.inner_text("#chart-note").startswith(("per 1m", "per 5m", "per 1h"))
        until("the latency", lambda: page.inner_text("#lat-p50") != "–")
        assert page.inner_text("#lat-p99") != "–"
        assert "delivered" in page.inner_text("#latency-note")
        until("the failure reasons", lambda: page.locator("#failures tbody tr").count() > 0)
        shown = page.inner_text("#failures tbody")
        assert any(r in shown for r in _reasons(events)), (shown, _reasons(events))
        _page_past_500(page, until, httpx.get(
            f"{base}/v1/campaign/{cid}/runs/{final['campaign_run_id']}/recipients",
            params={"limit": 25, "offset": 500}, headers={"X-API-Key": key}).json()["data"])
        page.select_option("#recipients-filter", "delivered")
        pages = -(-final["delivered"] // 25)
        until("the delivered filter",
              lambda: page.inner_text("#recipients-pager span") == f"page 1 of {pages}")
        statuses = page.locator("#recipients tbody td.st").all_inner_texts()
        assert statuses and set(statuses) == {"delivered"}, statuses
        page.select_option("#recipients-filter", "")
        until("all recipients again",
              lambda: page.inner_text("#recipients-pager span") == "page 1 of 60")

        shot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "dashboard.png")
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 0
        errors_seen = [c for c in console if c.startswith(("error", "pageerror"))
                       and "Failed to load resource" not in c]
        assert not errors_seen, console
        browser.close()

    emitter.join(30)
    assert not errors, errors
