"""Delivery insight over HTTP (timeline, failure reasons, latency), checked against an
independent reference: plain Python over the events, written from the contract (F4,
F5, F12) and the endpoints' documentation, importing nothing of the projector.

The property tests fold generated histories (``tests.fixtures.scenarios``, with
tenants that reuse each other's ids) in two hostile orders with redeliveries into
two real DuckDB stores and ask both over HTTP: the answers must be equal to each
other and to the reference, for every run and campaign of every workspace.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.keys import KeyRing
from api.readstore import ReadStore
from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.store.writer import Store
from schemas import MessageDlr, MessageSubmitted
from tests.api.conftest import (
    ALPHA_ALL,
    ALPHA_ANALYTICS,
    ALPHA_CAMPAIGNS,
    BIG_CID,
    BIG_RUN,
    GAMMA_ALL,
    EventFactory,
    get,
)
from tests.fixtures.scenarios import BASE, histories, hostile

# -- the reference ---------------------------------------------------------------------------

TERMINAL = {"delivered", "undelivered", "expired", "rejected", "failed"}
KINDS = ("sent", "failed", "skipped", "delivered", "failed_delivery")
WIDTH = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1)}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TOP = 20  # documented: groups listed before `other`
EDGES_MS = [s * 1000 for s in (1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, 259200)]
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown(text: str | None, chars: int) -> str | None:
    """Producer text as documented: ASCII control characters as spaces, cut."""
    return None if text is None else CONTROL.sub(" ", text)[:chars]


def rounded(ms: int) -> int:
    """Documented: latencies keep 4 significant digits, rounded down (exact below 10 s)."""
    digits = len(str(ms))
    return ms if digits <= 4 else ms // 10 ** (digits - 4) * 10 ** (digits - 4)


def iso(t: datetime) -> str:
    t = t.astimezone(UTC)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z"


class Insight:
    """Winning submits (F4) and reports (F5), keyed by scoped identities (F12)."""

    def __init__(self, events: list[Any]) -> None:
        self.runs: set[tuple[str, str, str]] = set()
        self.campaigns: set[tuple[str, str]] = set()
        self.submit: dict[tuple[str, str, str, str], Any] = {}
        self.report: dict[tuple[str, str, str, str], Any] = {}
        for e in events:
            self.campaigns.add((e.workspace_id, e.campaign_id))
            run_id = getattr(e, "run_id", None)
            if run_id is not None:
                self.runs.add((e.workspace_id, e.campaign_id, run_id))
            if e.type == "message.submitted":
                k = (e.workspace_id, e.campaign_id, e.run_id, e.recipient_id)
                cur = self.submit.get(k)
                if cur is None or (e.attempt, e.occurred_at, e.event_id) > (
                    cur.attempt, cur.occurred_at, cur.event_id
                ):
                    self.submit[k] = e
            elif e.type == "message.dlr":
                k = (e.workspace_id, e.campaign_id, e.run_id, e.message_id)
                cur = self.report.get(k)
                if cur is None or (e.status in TERMINAL, e.occurred_at, e.event_id) > (
                    cur.status in TERMINAL, cur.occurred_at, cur.event_id
                ):
                    self.report[k] = e

    def recipients(self, ws: str, cid: str, run_id: str | None) -> Iterator[tuple[Any, Any]]:
        """(winning submit, its terminal winning report or None) of submitted recipients."""
        for (w, c, r, _), s in self.submit.items():
            if (w, c) != (ws, cid) or (run_id is not None and r != run_id):
                continue
            rep = None
            if s.outcome == "sent":
                rep = self.report.get((w, c, r, s.message_id))
                if rep is not None and rep.status not in TERMINAL:
                    rep = None
            yield s, rep

    def events_of(self, ws: str, cid: str, run_id: str) -> list[tuple[str, datetime]]:
        out = []
        for s, rep in self.recipients(ws, cid, run_id):
            out.append((s.outcome, s.occurred_at))
            if rep is not None:
                kind = "delivered" if rep.status == "delivered" else "failed_delivery"
                out.append((kind, rep.occurred_at))
        return out

    def timeline(self, ws: str, cid: str, run_id: str, bucket: str | None) -> dict[str, Any]:
        evs = self.events_of(ws, cid, run_id)
        if bucket is None:
            minutes = [EPOCH + (t - EPOCH) // WIDTH["1m"] * WIDTH["1m"] for _, t in evs]
            span = (max(minutes) - min(minutes) + WIDTH["1m"]) if minutes else timedelta(0)
            bucket = ("1m" if span <= timedelta(hours=3)
                      else "5m" if span <= timedelta(hours=24) else "1h")  # fmt: skip
        width = WIDTH[bucket]
        per: dict[datetime, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
        for kind, t in evs:
            per[EPOCH + (t - EPOCH) // width * width][kind] += 1
        running = dict.fromkeys(KINDS, 0)
        buckets = []
        for start in sorted(per):
            for k in KINDS:
                running[k] += per[start][k]
            buckets.append({"start": iso(start), "counts": per[start],
                            "cumulative": dict(running)})  # fmt: skip
        return {"campaign_id": cid, "run_id": run_id, "bucket": bucket,
                "bucket_seconds": int(width.total_seconds()), "totals": running,
                "buckets": buckets}  # fmt: skip

    def failures(self, ws: str, cid: str, run_id: str | None) -> dict[str, Any]:
        subs: dict[tuple[str, str | None], int] = defaultdict(int)
        reps: dict[tuple[str, str | None], int] = defaultdict(int)
        for s, rep in self.recipients(ws, cid, run_id):
            if s.outcome in ("failed", "skipped"):
                subs[(s.outcome, shown(s.reason, 200))] += 1
            elif rep is not None and rep.status != "delivered":
                reps[(rep.status, shown(rep.error_code, 64))] += 1

        def listing(groups: dict[tuple[str, str | None], int], a: str, b: str) -> dict[str, Any]:
            ranked = sorted(groups.items(),
                            key=lambda g: (-g[1], g[0][0], g[0][1] is not None, g[0][1] or ""))
            rest = ranked[TOP:]
            return {"total": sum(groups.values()),
                    "items": [{a: k[0], b: k[1], "count": n} for k, n in ranked[:TOP]],
                    "other": {"count": sum(n for _, n in rest), "groups": len(rest)}}

        return {"campaign_id": cid, "run_id": run_id, "limit": TOP,
                "submits": listing(subs, "outcome", "reason"),
                "reports": listing(reps, "status", "error_code")}  # fmt: skip

    def latency(self, ws: str, cid: str, run_id: str) -> dict[str, Any]:
        ms, skewed = [], 0
        for s, rep in self.recipients(ws, cid, run_id):
            if rep is None or rep.status != "delivered":
                continue
            us = (rep.occurred_at - s.occurred_at) // timedelta(microseconds=1)
            skewed += us < 0
            ms.append(rounded(max(us, 0) // 1000))
        ms.sort()

        def rank(p: Fraction) -> int | None:  # nearest rank: the value at rank ceil(p * n)
            return ms[math.ceil(p * len(ms)) - 1] if ms else None

        lows, highs = [0, *EDGES_MS], [*EDGES_MS, None]
        hist = [sum(1 for v in ms if lo <= v and (hi is None or v < hi))
                for lo, hi in zip(lows, highs, strict=True)]  # fmt: skip
        return {"campaign_id": cid, "run_id": run_id, "exact": all(v < 10_000 for v in ms),
                "delivered": len(ms),
                "clock_skewed": skewed, "min_ms": ms[0] if ms else None,
                "p50_ms": rank(Fraction(1, 2)), "p90_ms": rank(Fraction(9, 10)),
                "p99_ms": rank(Fraction(99, 100)), "max_ms": ms[-1] if ms else None,
                "histogram": [{"from_ms": lo, "to_ms": hi, "count": n}
                              for lo, hi, n in zip(lows, highs, hist, strict=True)]}  # fmt: skip


# -- generated scenarios ---------------------------------------------------------------------

REASONS = [None, "", "timeout", "invalid number", "<script>alert(1)</script>",
           "line\nbreak", "line break", "bell\x07", "x" * 250, "é😀" * 150, "timeout\t"]
CODES = [None, "30003", "30003\n", "E" * 100, "<b>x</b>", "0"]


@st.composite
def insight_histories(draw: st.DrawFn) -> list[Any]:
    """Generated histories with producer text on failures and reports, and times stretched
    (seconds to hours apart) so that every default bucket is chosen."""
    events = draw(histories(max_runs=2, max_recipients=5))
    scale = draw(st.sampled_from([1, 7, 600, 5000]))
    out = []
    for e in events:
        update: dict[str, Any] = {"occurred_at": BASE + (e.occurred_at - BASE) * scale}
        if isinstance(e, MessageSubmitted) and e.outcome != "sent":
            update["reason"] = draw(st.sampled_from(REASONS))
        if isinstance(e, MessageDlr):
            update["error_code"] = draw(st.sampled_from(CODES))
        out.append(e.model_copy(update=update))
    return out


def _key(ws: str) -> str:
    return f"key-{ws}-0123456789abcdef"


def _keyring(workspaces: set[str]) -> KeyRing:
    return KeyRing.from_dict({"keys": [
        {"key": _key(ws), "workspace_id": ws, "scopes": ["campaigns:read", "analytics:read"]}
        for ws in sorted(workspaces)]})  # fmt: skip


@contextmanager
def served(events: list[Any], chunk: int, workspaces: set[str]) -> Iterator[TestClient]:
    """A real DuckDB store holding ``events`` (flushed ``chunk`` at a time), over HTTP."""
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "p.duckdb") as store:
        for i in range(0, len(events), chunk):
            store.flush(events[i : i + chunk], {})
        status = PipelineStatus(ready=True, offsets={}, flush_seq=store.seq)
        app = create_app(ReadStore(store.cursor), keys=_keyring(workspaces),
                         status=status.snapshot, metrics=Metrics())  # fmt: skip
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client


def answers(client: TestClient, ref: Insight, bucket: str | None) -> dict[str, Any]:
    """Every new answer of every run and campaign, by path."""
    out: dict[str, Any] = {}
    paths: list[tuple[str, str]] = []
    for ws, cid, run_id in sorted(ref.runs):
        base = f"/v1/campaign/{cid}/runs/{run_id}"
        q = f"?bucket={bucket}" if bucket else ""
        paths += [(ws, f"{base}/timeline{q}"), (ws, f"{base}/latency"),
                  (ws, f"/v1/campaign/{cid}/failures?run_id={run_id}")]  # fmt: skip
    paths += [(ws, f"/v1/campaign/{cid}/failures") for ws, cid in sorted(ref.campaigns)]
    for ws, path in paths:
        r = client.get(path, headers={"X-API-Key": _key(ws)})
        assert r.status_code == 200, (path, r.text)
        out[f"{ws}:{path}"] = r.json()["data"]
    return out


def expected(ref: Insight, bucket: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ws, cid, run_id in sorted(ref.runs):
        base = f"/v1/campaign/{cid}/runs/{run_id}"
        q = f"?bucket={bucket}" if bucket else ""
        out[f"{ws}:{base}/timeline{q}"] = ref.timeline(ws, cid, run_id, bucket)
        out[f"{ws}:{base}/latency"] = ref.latency(ws, cid, run_id)
        out[f"{ws}:/v1/campaign/{cid}/failures?run_id={run_id}"] = ref.failures(ws, cid, run_id)
    for ws, cid in sorted(ref.campaigns):
        out[f"{ws}:/v1/campaign/{cid}/failures"] = ref.failures(ws, cid, None)
    return out


@settings(max_examples=20, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=insight_histories(), data=st.data(),
       bucket=st.sampled_from([None, "1m", "5m", "1h"]))  # fmt: skip
def test_answers_match_the_reference_whatever_the_order_and_redelivery(
    events: list[Any], data: st.DataObject, bucket: str | None
) -> None:
    ref = Insight(events)
    want = expected(ref, bucket)
    workspaces = {e.workspace_id for e in events}
    got = []
    for _ in range(2):  # two hostile orders with redeliveries, flushed in different chunks
        order = hostile(events, data)
        chunk = data.draw(st.integers(1, max(1, len(order))), label="chunk")
        with served(order, chunk, workspaces) as client:
            got.append(answers(client, ref, bucket))
    assert got[0] == want
    assert got[1] == want


# -- edges, by hand ------------------------------------------------------------------------------

CID, RUN = "c-insight", "run-insight"


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Callable[[list[Any]], Callable[[str], Any]]]:
    """Factory: events -> ``ask(path) -> data`` over a real store holding them."""
    opened: list[tuple[Store, TestClient]] = []

    def make(events: list[Any]) -> Callable[[str], Any]:
        store = Store(tmp_path / f"edge-{len(opened)}.duckdb").__enter__()
        store.flush(events, {})
        status = PipelineStatus(ready=True, offsets={}, flush_seq=store.seq)
        client = TestClient(create_app(ReadStore(store.cursor), keys=_keyring({"ws_alpha"}),
                                       status=status.snapshot, metrics=Metrics()))  # fmt: skip
        opened.append((store, client))

        def ask(path: str) -> Any:
            r = client.get(path, headers={"X-API-Key": _key("ws_alpha")})
            assert r.status_code == 200, r.text
            return r.json()["data"]

        return ask

    yield make
    for store, client in opened:
        client.close()
        store.__exit__(None, None, None)


def _submits(ev: EventFactory, n: int, *, outcome: str = "sent", reason: Any = None,
             at: Callable[[int], datetime] | None = None, start: int = 0) -> list[Any]:
    out = []
    for i in range(start, start + n):
        extra = {"occurred_at": at(i)} if at else {}
        out.append(ev(MessageSubmitted, campaign_id=CID, run_id=RUN, batch_id="b1",
                      recipient_id=f"r{i:04d}", phone_number="2557", outcome=outcome,
                      message_id=f"m{i:04d}" if outcome == "sent" else None,
                      reason=reason(i) if callable(reason) else reason, **extra))  # fmt: skip
    return out


def test_failures_fold_the_long_tail_and_bound_producer_text(edge: Any) -> None:
    ev = EventFactory()
    # 25 reasons, reason k on k recipients (k = 1..25): the 20 largest are listed.
    events, i = [], 0
    for k in range(1, 26):
        events += _submits(ev, k, outcome="failed", reason=f"reason {k:02d}", start=i)
        i += k
    long_html = "<img src=x onerror=alert(1)>\r\n" + "é" * 500
    events += _submits(ev, 30, outcome="skipped", reason=long_html, start=i)
    data = edge(events)(f"/v1/campaign/{CID}/failures")
    submits = data["submits"]
    assert submits["items"][0] == {"outcome": "skipped", "count": 30,
                                   "reason": ("<img src=x onerror=alert(1)>  " + "é" * 500)[:200]}
    assert len(submits["items"][0]["reason"]) == 200
    assert [it["reason"] for it in submits["items"][1:]] == [
        f"reason {k:02d}" for k in range(25, 6, -1)]  # fmt: skip
    assert submits["other"] == {"count": sum(range(1, 7)), "groups": 6}
    assert submits["total"] == 30 + sum(range(1, 26))
    assert data["reports"] == {"total": 0, "items": [], "other": {"count": 0, "groups": 0}}


def test_latency_percentiles_are_exact_nearest_rank(edge: Any) -> None:
    ev = EventFactory()
    t0 = datetime(2026, 5, 12, 8, 0, tzinfo=UTC)
    events = _submits(ev, 100, at=lambda i: t0 + timedelta(minutes=i))
    # Recipient i is delivered (i + 1) seconds after its submit; r0000's report is stamped
    # 5 s before its submit (another clock): 0 ms, counted as skewed.
    for i in range(100):
        dt = timedelta(seconds=-5) if i == 0 else timedelta(seconds=i + 1, microseconds=999)
        events.append(ev(MessageDlr, campaign_id=CID, run_id=RUN, message_id=f"m{i:04d}",
                         status="delivered", occurred_at=t0 + timedelta(minutes=i) + dt))
    # A later non-terminal report never beats the terminal one (F5).
    events.append(ev(MessageDlr, campaign_id=CID, run_id=RUN, message_id="m0050",
                     status="accepted", occurred_at=t0 + timedelta(days=9)))
    # A failed submit may carry a message id (optional unless sent); its reports never
    # make its recipient delivered (F5: only the message of a winning sent submit).
    events.append(ev(MessageSubmitted, campaign_id=CID, run_id=RUN, batch_id="b1",
                     recipient_id="r-failed", phone_number="2557", outcome="failed",
                     message_id="m-failed"))
    for status in ("delivered", "rejected"):
        events.append(ev(MessageDlr, campaign_id=CID, run_id=RUN, message_id="m-failed",
                         status=status))
    ask = edge(events)
    data = ask(f"/v1/campaign/{CID}/runs/{RUN}/latency")
    timeline = ask(f"/v1/campaign/{CID}/runs/{RUN}/timeline")
    assert timeline["totals"] == {"sent": 100, "failed": 1, "skipped": 0, "delivered": 100,
                                  "failed_delivery": 0}
    assert ask(f"/v1/campaign/{CID}/failures")["reports"]["total"] == 0
    # Sorted ms: 0, 2000, 3000, ..., 100000 (ms of 1 s + 999 us truncate to whole ms).
    assert (data["delivered"], data["clock_skewed"]) == (100, 1)
    assert (data["min_ms"], data["max_ms"]) == (0, 100000)
    assert (data["p50_ms"], data["p90_ms"], data["p99_ms"]) == (50000, 90000, 99000)
    counts = {h["from_ms"]: h["count"] for h in data["histogram"]}
    assert counts[0] == 1 and counts[1000] == 3 and counts[5000] == 5
    assert counts[10000] == 20 and counts[30000] == 30 and counts[60000] == 41
    assert sum(counts.values()) == 100


@pytest.mark.parametrize(("seconds", "exact", "values"), [
    ((0.5, 9.999), True, (500, 9999)),
    ((9.999, 12.3456789, 3723.4567), False, (9999, 12340, 3723000)),
])  # fmt: skip
def test_latency_keeps_four_significant_digits_from_10_s(
    edge: Any, seconds: tuple[float, ...], exact: bool, values: tuple[int, ...]
) -> None:
    ev = EventFactory()
    t0 = datetime(2026, 5, 12, 8, 0, tzinfo=UTC)
    events = _submits(ev, len(seconds), at=lambda i: t0)
    for i, s in enumerate(seconds):
        events.append(ev(MessageDlr, campaign_id=CID, run_id=RUN, message_id=f"m{i:04d}",
                         status="delivered", occurred_at=t0 + timedelta(seconds=s)))
    data = edge(events)(f"/v1/campaign/{CID}/runs/{RUN}/latency")
    assert data["exact"] is exact
    assert (data["min_ms"], data["p50_ms"], data["max_ms"]) == (
        values[0], values[(len(values) - 1) // 2], values[-1])  # fmt: skip
    assert all(v <= s * 1000 < v * 1.001 + 1 for v, s in zip(values, seconds, strict=True))


@pytest.mark.parametrize(("minutes", "bucket"), [(0, "1m"), (179, "1m"), (180, "5m"),
                                                 (1439, "5m"), (1440, "1h")])
def test_default_bucket_follows_the_span(edge: Any, minutes: int, bucket: str) -> None:
    ev = EventFactory()
    t0 = datetime(2026, 5, 12, 8, 0, 30, tzinfo=UTC)
    events = _submits(ev, 2, at=lambda i: t0 + timedelta(minutes=minutes * i))
    data = edge(events)(f"/v1/campaign/{CID}/runs/{RUN}/timeline")
    assert data["bucket"] == bucket
    assert data["totals"]["sent"] == 2 and data["buckets"][-1]["cumulative"]["sent"] == 2


# -- checks, headers and documents (the shared seeded database) -----------------------------------

INSIGHT_PATHS = [
    f"/v1/campaign/{BIG_CID}/runs/{BIG_RUN}/timeline",
    f"/v1/campaign/{BIG_CID}/runs/{BIG_RUN}/timeline?bucket=5m",
    f"/v1/campaign/{BIG_CID}/failures",
    f"/v1/campaign/{BIG_CID}/failures?run_id={BIG_RUN}",
    f"/v1/campaign/{BIG_CID}/runs/{BIG_RUN}/latency",
]


@pytest.mark.parametrize("path", INSIGHT_PATHS)
def test_checks_in_order_and_conditional_gets(client: TestClient, path: str) -> None:
    assert get(client, path, key=None).status_code == 401
    r = get(client, path, key=ALPHA_CAMPAIGNS)  # lacks analytics:read
    assert (r.status_code, r.json()["errors"][0]["code"]) == (403, "INSUFFICIENT_SCOPE")
    r = get(client, path, key=GAMMA_ALL)  # another workspace
    assert (r.status_code, r.json()["errors"][0]["code"], r.json()["data"]) == (
        403, "FORBIDDEN", None)  # fmt: skip
    missing = path.replace(BIG_CID, "c0000000-0000-4000-8000-00000000dead")
    assert get(client, missing).json()["errors"][0]["code"] == "CAMPAIGN_NOT_FOUND"
    r = get(client, path, key=ALPHA_ANALYTICS)
    assert r.status_code == 200
    assert r.headers["X-Projection-Watermark"] and r.headers["Cache-Control"] == "no-cache"
    again = get(client, path, **{"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and again.headers["ETag"] == r.headers["ETag"]


@pytest.mark.parametrize("path", [*INSIGHT_PATHS, f"/v1/campaign/{BIG_CID}/stats"])
def test_a_remembered_answer_reads_nothing(
    client: TestClient, reader: ReadStore, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """Once built at the campaign's position, an answer (200 or 304) is served from the
    cache on the event loop: no read transaction, no query (docs/decisions/0038)."""
    first = get(client, path)
    assert first.status_code == 200

    def no_read(*_: Any, **__: Any) -> Any:
        raise AssertionError("a remembered answer opened a read")

    monkeypatch.setattr(reader, "consistent", no_read)
    monkeypatch.setattr(reader, "_cursor", no_read)
    again = get(client, path)
    assert again.status_code == 200, again.text
    assert again.json()["data"] == first.json()["data"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert get(client, path, **{"If-None-Match": first.headers["ETag"]}).status_code == 304
    other = get(client, path, key=GAMMA_ALL)  # the checks still come first
    assert (other.status_code, other.json()["data"]) == (403, None)


@pytest.mark.parametrize("path", [
    f"/v1/campaign/{BIG_CID}/runs/nope/timeline",
    f"/v1/campaign/{BIG_CID}/runs/nope/latency",
    f"/v1/campaign/{BIG_CID}/failures?run_id=nope",
])  # fmt: skip
def test_unknown_run_is_404(client: TestClient, path: str) -> None:
    r = get(client, path, key=ALPHA_ALL)
    assert (r.status_code, r.json()["errors"][0]["code"]) == (404, "RUN_NOT_FOUND")


@pytest.mark.parametrize("query", ["bucket=2m", "bucket=", "bucket=1M"])
def test_bad_bucket_is_422(client: TestClient, query: str) -> None:
    r = get(client, f"/v1/campaign/{BIG_CID}/runs/{BIG_RUN}/timeline?{query}")
    assert (r.status_code, r.json()["errors"][0]["code"]) == (422, "VALIDATION_ERROR")


def test_timeline_totals_equal_the_run_counters(client: TestClient) -> None:
    run = get(client, f"/v1/campaign/{BIG_CID}/runs/{BIG_RUN}").json()["data"]["run"]
    data = get(client, INSIGHT_PATHS[0]).json()["data"]
    assert data["totals"] == {k: run[k] for k in KINDS}


def test_documented_with_examples(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    for path in ("/v1/campaign/{campaign_id}/runs/{run_id}/timeline",
                 "/v1/campaign/{campaign_id}/failures",
                 "/v1/campaign/{campaign_id}/runs/{run_id}/latency"):  # fmt: skip
        op = doc["paths"][path]["get"]
        assert op["responses"]["200"]["content"]["application/json"]["examples"]
        assert {"304", "401", "403", "404"} <= set(op["responses"])
