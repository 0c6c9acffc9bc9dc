"""Hypothesis strategies for hostile campaign histories.

Small id and time spaces on purpose: equal ``occurred_at`` values, several
terminal events per run, retries that move a recipient to another batch, DLRs
for messages whose submit lost, and reports before submits all happen often.

With ``tenants`` the campaigns come from a pool in which two workspaces share
a campaign id, and every campaign uses the same run, batch, recipient and
message ids (F12): only scoped identities keep their projections apart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from schemas import EVENT_ADAPTER

BASE = datetime(2026, 5, 12, 9, 0, tzinfo=UTC)
DLR_STATUSES = ["accepted", "buffered", "delivered", "undelivered", "expired", "rejected", "failed"]
# (workspace_id, campaign_id): camp-0 exists in two workspaces.
TENANT_CAMPAIGNS = [("ws-a", "camp-0"), ("ws-b", "camp-0"), ("ws-b", "camp-1"), ("ws-a", "camp-2")]


def _ts(seconds: int) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@st.composite
def histories(
    draw: st.DrawFn, max_runs: int = 3, max_recipients: int = 6, tenants: bool | None = None
) -> list[Any]:
    """Campaigns' events, as validated models, in generation order.

    One or two campaigns with ids of their own, or (``tenants``; drawn when
    None) two or three campaigns of ``TENANT_CAMPAIGNS`` that reuse each
    other's ids.
    """
    counter = iter(range(10**9))
    events: list[dict[str, Any]] = []
    t = st.integers(min_value=0, max_value=40)

    def eid() -> str:
        # Event ids sort in a random order relative to time, so ties are real.
        return f"{draw(st.integers(0, 999)):03d}-{next(counter)}"

    def emit(kind: str, cid: str, ws: str, **fields: Any) -> None:
        events.append(
            {
                "type": kind,
                "event_id": eid(),
                "occurred_at": _ts(draw(t)),
                "workspace_id": ws,
                "campaign_id": cid,
                **fields,
            }
        )

    if tenants is None:
        tenants = draw(st.booleans())
    if tenants:
        pool = st.sampled_from(TENANT_CAMPAIGNS)
        picked = draw(st.lists(pool, min_size=2, max_size=3, unique=True))
        campaigns = [(ws, cid, "") for ws, cid in picked]
    else:
        campaigns = [(f"ws-{c}", f"camp-{c}", f"{c}-") for c in range(draw(st.integers(1, 2)))]
    for ws, cid, c in campaigns:
        for _ in range(draw(st.integers(0, 2))):
            emit(
                "campaign.defined",
                cid,
                ws,
                name=f"name-{draw(st.integers(0, 3))}",
                channel="SMS",
                provider=draw(st.sampled_from(["mock", "carrier-x"])),
            )
        # Every tenant campaign has a run: its ids then collide with the others'.
        for r in range(draw(st.integers(1 if tenants else 0, max_runs))):
            rid = f"run-{c}{r}"
            n = draw(st.integers(0, max_recipients))
            size = draw(st.integers(1, 3))
            max_attempts = draw(st.integers(1, 3))
            for _ in range(draw(st.integers(0, 2))):
                emit(
                    "run.scheduled",
                    cid,
                    ws,
                    run_id=rid,
                    scheduled_at=_ts(draw(t)),
                    recipient_count=draw(st.integers(0, max_recipients)),
                    batch_size=size,
                    max_attempts=max_attempts,
                )
            for _ in range(draw(st.integers(0, 2))):
                emit("run.claimed", cid, ws, run_id=rid)
            for _ in range(draw(st.integers(0, 1))):
                emit(
                    "run.snapshot_frozen",
                    cid,
                    ws,
                    run_id=rid,
                    frozen_at=_ts(draw(t)),
                    channel="SMS",
                    provider="mock",
                    sender_id="BRIQ",
                    template=None,
                    personalized=False,
                    body="hi",
                    cost={"total_cost": n, "currency_units": "sms_parts"},
                    recipient_count=n,
                    recipients=[f"2557{i:08d}" for i in range(n)],
                )
            for kind in draw(
                st.lists(
                    st.sampled_from(["run.completed", "run.failed", "run.cancelled"]), max_size=2
                )
            ):
                extra = {"error": {"code": "E", "message": "boom"}} if kind == "run.failed" else {}
                emit(kind, cid, ws, run_id=rid, **extra)
            batches = [f"b-{c}{r}-{i}" for i in range(max(1, -(-n // size)))]
            for i, bid in enumerate(batches):
                members = [
                    {"recipient_id": f"rcp-{j}", "phone_number": f"2557{j:08d}"}
                    for j in range(i * size, min(n, (i + 1) * size))
                ]
                if draw(st.booleans()):
                    emit(
                        "batch.created",
                        cid,
                        ws,
                        run_id=rid,
                        batch_id=bid,
                        batch_sequence=i + 1,
                        recipients=members,
                    )
                if draw(st.booleans()):
                    emit("batch.started", cid, ws, run_id=rid, batch_id=bid)
                for kind in draw(
                    st.lists(st.sampled_from(["batch.completed", "batch.failed"]), max_size=2)
                ):
                    extra = (
                        {"error_detail": {"code": "PROVIDER_DOWN"}}
                        if kind == "batch.failed"
                        else {}
                    )
                    emit(kind, cid, ws, run_id=rid, batch_id=bid, **extra)
            for j in range(n):
                for attempt in range(1, draw(st.integers(0, max_attempts)) + 1):
                    outcome = draw(st.sampled_from(["sent", "failed", "skipped"]))
                    mid = f"msg-{c}{r}-{j}-{attempt}" if outcome == "sent" else None
                    emit(
                        "message.submitted",
                        cid,
                        ws,
                        run_id=rid,
                        batch_id=draw(st.sampled_from(batches)),
                        recipient_id=f"rcp-{j}",
                        phone_number=f"2557{j:08d}",
                        outcome=outcome,
                        message_id=mid,
                        attempt=attempt,
                    )
                    if mid is not None:
                        for status in draw(st.lists(st.sampled_from(DLR_STATUSES), max_size=2)):
                            emit("message.dlr", cid, ws, run_id=rid, message_id=mid, status=status)
    return [EVENT_ADAPTER.validate_python(e) for e in events]
