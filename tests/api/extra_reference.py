"""An independent reference for the extra views: plain Python over event dicts.

Written from the contract (F3-F11) and the endpoint docs only; it imports
nothing of the projector, so the HTTP answers are checked against values
computed another way.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

TERMINAL_DLR = {"delivered", "undelivered", "expired", "rejected", "failed"}
RUN_TERMINAL = ("run.completed", "run.failed", "run.cancelled")


def ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def fmt(value: datetime | None) -> str | None:
    if value is None:
        return None
    v = value.astimezone(UTC)
    return f"{v:%Y-%m-%dT%H:%M:%S}.{v.microsecond // 1000:03d}Z"


def key(e: dict[str, Any]) -> tuple[datetime, str]:
    return (ts(e["occurred_at"]), e["event_id"])


class Ref:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in events:
            by_type[e["type"]].append(e)
        self.workspace: dict[str, str] = {}
        for e in events:
            cid = e["campaign_id"]
            self.workspace[cid] = min(self.workspace.get(cid, e["workspace_id"]), e["workspace_id"])
        self.defined: dict[str, dict[str, Any]] = {}
        for e in by_type["campaign.defined"]:
            cur = self.defined.get(e["campaign_id"])
            if cur is None or key(e) > key(cur):
                self.defined[e["campaign_id"]] = e
        # runs
        self.run_campaign: dict[str, str] = {}
        for e in events:
            if "run_id" in e:
                self.run_campaign[e["run_id"]] = e["campaign_id"]
        self.scheduled: dict[str, dict[str, Any]] = {}
        for e in by_type["run.scheduled"]:
            cur = self.scheduled.get(e["run_id"])
            if cur is None or key(e) > key(cur):
                self.scheduled[e["run_id"]] = e
        self.claimed: dict[str, datetime] = {}
        for e in by_type["run.claimed"]:
            t = ts(e["occurred_at"])
            self.claimed[e["run_id"]] = min(self.claimed.get(e["run_id"], t), t)
        self.terminal: dict[str, dict[str, Any]] = {}
        for t_ in RUN_TERMINAL:
            for e in by_type[t_]:
                cur = self.terminal.get(e["run_id"])
                if cur is None or key(e) < key(cur):
                    self.terminal[e["run_id"]] = e
        # batches
        self.batch_events: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for e in events:
            if e["type"].startswith("batch."):
                self.batch_events[(e["run_id"], e["batch_id"])].append(e)
        # recipients: membership (smallest sequence) and submits
        self.members: dict[tuple[str, str], tuple[int, str, str]] = {}
        for e in by_type["batch.created"]:
            for r in e["recipients"]:
                k = (e["run_id"], r["recipient_id"])
                cand = (e["batch_sequence"], e["batch_id"], r["phone_number"])
                if k not in self.members or cand[0] < self.members[k][0]:
                    self.members[k] = cand
        self.winning: dict[tuple[str, str], dict[str, Any]] = {}
        self.attempts: dict[tuple[str, str, int], dict[str, Any]] = {}
        for e in by_type["message.submitted"]:
            k = (e["run_id"], e["recipient_id"])
            a = e.get("attempt", 1) or 1
            rank = (a, *key(e))
            cur = self.winning.get(k)
            if cur is None or rank > (cur.get("attempt", 1) or 1, *key(cur)):
                self.winning[k] = e
            ak = (*k, a)
            cur_a = self.attempts.get(ak)
            if cur_a is None or key(e) > key(cur_a):
                self.attempts[ak] = e
        self.message: dict[str, dict[str, Any]] = {}
        for e in by_type["message.dlr"]:
            cur = self.message.get(e["message_id"])
            rank = (e["status"] in TERMINAL_DLR, *key(e))
            if cur is None or rank > (cur["status"] in TERMINAL_DLR, *key(cur)):
                self.message[e["message_id"]] = e

    # -- per run ---------------------------------------------------------------
    def runs_of(self, cid: str) -> list[str]:
        return sorted(r for r, c in self.run_campaign.items() if c == cid)

    def campaigns_of(self, ws: str) -> list[str]:
        return sorted(c for c, w in self.workspace.items() if w == ws)

    def scheduled_at(self, rid: str) -> datetime | None:
        s = self.scheduled.get(rid)
        return ts(s["scheduled_at"]) if s else None

    def recipient_count(self, rid: str) -> int:
        s = self.scheduled.get(rid)
        return s["recipient_count"] if s else 0

    def max_attempts(self, rid: str) -> int:
        s = self.scheduled.get(rid)
        return (s.get("max_attempts") or 1) if s else 1

    def status(self, rid: str) -> str:
        if rid in self.terminal:
            return self.terminal[rid]["type"].split(".")[1]
        return "running" if rid in self.claimed else "scheduled"

    def recipients(self, rid: str) -> list[str]:
        ids = {r for (run, r) in self.members if run == rid}
        ids |= {r for (run, r) in self.winning if run == rid}
        seq = {r: self.members[(rid, r)][0] for r in ids if (rid, r) in self.members}
        return sorted(ids, key=lambda r: (r not in seq, seq.get(r, 0), r))

    def f11(self, rid: str, r: str) -> str:
        w = self.winning.get((rid, r))
        if w is None:
            return "pending"
        if w["outcome"] != "sent":
            return w["outcome"]
        m = self.message.get(w["message_id"])
        if m is not None and m["status"] in TERMINAL_DLR:
            return "delivered" if m["status"] == "delivered" else "failed"
        return "sent"

    def retrying(self, rid: str, r: str) -> bool:
        w = self.winning.get((rid, r))
        return (w is not None and w["outcome"] == "failed" and rid not in self.terminal
                and (w.get("attempt", 1) or 1) < self.max_attempts(rid))

    def bucket(self, rid: str, r: str) -> str:
        return "retrying" if self.retrying(rid, r) else self.f11(rid, r)

    def counts(self, rid: str) -> dict[str, int]:
        """Winning outcomes and deliveries of a run's recipients."""
        out = dict.fromkeys(("sent", "failed", "skipped", "delivered", "failed_delivery"), 0)
        for r in self.recipients(rid):
            w = self.winning.get((rid, r))
            if w is None:
                continue
            out[w["outcome"]] += 1
            if w["outcome"] == "sent":
                m = self.message.get(w["message_id"])
                if m is not None and m["status"] in TERMINAL_DLR:
                    out["delivered" if m["status"] == "delivered" else "failed_delivery"] += 1
        return out

    def total(self, rid: str) -> int:
        return max(self.recipient_count(rid), len(self.recipients(rid)))

    def outcome(self, rid: str) -> str:
        st = self.status(rid)
        c = self.counts(rid)
        if st == "completed" and (c["failed"] or c["failed_delivery"]):
            return "completed_with_errors"
        return st

    def run_numbers(self, cid: str) -> dict[str, int]:
        floor = datetime.min.replace(tzinfo=UTC)
        runs = sorted(self.runs_of(cid), key=lambda r: (
            self.scheduled_at(r) is not None, self.scheduled_at(r) or floor, r))
        return {r: i for i, r in enumerate(runs, 1)}

    def latest(self, cid: str) -> str | None:
        numbers = self.run_numbers(cid)
        return max(numbers, key=numbers.__getitem__) if numbers else None

    def batch_status(self, bk: tuple[str, str]) -> str:
        evs = self.batch_events[bk]
        terms = [e for e in evs if e["type"] in ("batch.completed", "batch.failed")]
        if terms:
            return min(terms, key=key)["type"].split(".")[1]
        if any(e["type"] == "batch.started" for e in evs):
            return "running"
        return "pending"

    # -- payloads ------------------------------------------------------------------
    def stats(self, cid: str) -> dict[str, Any]:
        buckets = dict.fromkeys(("pending", "sent", "delivered", "failed", "skipped",
                                 "retrying"), 0)
        total = 0
        breakdown: dict[int, int] = defaultdict(int)
        exhausted = 0
        for rid in self.runs_of(cid):
            total += self.total(rid)
            known = self.recipients(rid)
            buckets["pending"] += self.total(rid) - len(known)
            for r in known:
                buckets[self.bucket(rid, r)] += 1
                w = self.winning.get((rid, r))
                if w is not None:
                    a = w.get("attempt", 1) or 1
                    breakdown[a] += 1
                    if w["outcome"] == "failed" and a >= self.max_attempts(rid):
                        exhausted += 1
        batch_counts = dict.fromkeys(("pending", "running", "completed", "failed"), 0)
        for bk in self.batch_events:
            if self.run_campaign[bk[0]] == cid:
                batch_counts[self.batch_status(bk)] += 1
        attempts = sum(1 for (rid, _r, _a) in self.attempts if self.run_campaign[rid] == cid)
        return {
            "campaign_id": cid,
            "run_count": len(self.runs_of(cid)),
            "recipient_counts": {"total": total, **buckets},
            "batch_counts": batch_counts,
            "retry_breakdown": [{"attempt": a, "recipients": n}
                                for a, n in sorted(breakdown.items())],
            "in_flight": buckets["sent"],
            "exhausted": exhausted,
            "receipt_overdue": self.receipt_overdue(cid),
            "attempts": {"total": attempts,
                         "average_per_recipient": round(attempts / total, 2) if total else 0.0},
        }

    def receipt_overdue(self, cid: str, window: timedelta = timedelta(hours=72)) -> int:
        """Sent recipients without a terminal report, sent more than ``window`` before the
        campaign's latest event time of any of its runs (F8)."""
        times = [ts(e["occurred_at"]) for e in self.events
                 if "run_id" in e and self.run_campaign[e["run_id"]] == cid]
        if not times:
            return 0
        cutoff = max(times) - window
        n = 0
        for rid in self.runs_of(cid):
            for r in self.recipients(rid):
                w = self.winning.get((rid, r))
                if w is not None and self.f11(rid, r) == "sent" and ts(w["occurred_at"]) < cutoff:
                    n += 1
        return n

    def pipeline(self, rid: str | None) -> dict[str, int]:
        if rid is None:
            return dict.fromkeys(("scheduled", "submitted", "sent", "failed", "skipped",
                                  "delivered"), 0)
        c = self.counts(rid)
        return {"scheduled": self.recipient_count(rid),
                "submitted": c["sent"] + c["failed"] + c["skipped"], "sent": c["sent"],
                "failed": c["failed"], "skipped": c["skipped"], "delivered": c["delivered"]}

    def metrics(self, cid: str) -> dict[str, Any]:
        rid = self.latest(cid)
        return {"campaign_id": cid, "run_id": rid, "counts": self.pipeline(rid)}

    def state(self, cid: str, now: datetime) -> str:
        rid = self.latest(cid)
        if rid is None:
            return "not_scheduled"
        st = self.status(rid)
        if st != "scheduled":
            return st
        at = self.scheduled_at(rid)
        return "scheduled" if at is not None and at > now else "pending_or_overdue"

    def execution(self, cid: str, now: datetime) -> dict[str, Any]:
        rid = self.latest(cid)
        d = self.defined.get(cid)
        state = self.state(cid, now)
        out: dict[str, Any] = {"campaign_id": cid, "name": d["name"] if d else None,
                               "state": state, "schedule": None, "last_execution": None}
        if rid is not None:
            term = self.terminal.get(rid)
            out["schedule"] = {"run_id": rid, "scheduled_at": fmt(self.scheduled_at(rid)),
                               "scheduled": state == "scheduled"}
            out["last_execution"] = {
                "run_id": rid, "run_number": self.run_numbers(cid)[rid],
                "status": self.status(rid), "outcome": self.outcome(rid),
                "started_at": fmt(self.claimed.get(rid)),
                "completed_at": fmt(ts(term["occurred_at"])) if term else None,
                "counts": self.pipeline(rid),
            }
        return out

    def summary(self, cid: str, now: datetime) -> dict[str, Any]:
        d = self.defined.get(cid) or {}
        ex = self.execution(cid, now)
        updated = max(ts(e["occurred_at"]) for e in self.events if e["campaign_id"] == cid)
        return {
            "campaign_id": cid, "name": d.get("name"),
            "campaign_type": (d.get("campaign_type") or "broadcast") if d else None,
            "channel": d.get("channel"),
            "channel_name": (d.get("channel_name") or d.get("channel")) if d else None,
            "provider": d.get("provider"), "updated_at": fmt(updated),
            "run_count": len(self.runs_of(cid)), "schedule": ex["schedule"],
            "latest_execution": {"state": ex["state"], "run": ex["last_execution"]},
        }

    def run_history(self, cid: str) -> list[dict[str, Any]]:
        numbers = self.run_numbers(cid)
        out = []
        for rid in sorted(numbers, key=numbers.__getitem__, reverse=True):
            term = self.terminal.get(rid)
            c = self.counts(rid)
            err = term.get("error") if term else None
            out.append({
                "run_id": rid, "run_number": numbers[rid], "status": self.status(rid),
                "outcome": self.outcome(rid), "scheduled_at": fmt(self.scheduled_at(rid)),
                "started_at": fmt(self.claimed.get(rid)),
                "completed_at": fmt(ts(term["occurred_at"])) if term else None,
                "recipient_count": self.recipient_count(rid), "total_recipients": self.total(rid),
                **{k: c[k] for k in ("sent", "failed", "skipped", "delivered",
                                     "failed_delivery")},
                "error": {"code": err["code"], "message": err["message"]} if err else None,
            })
        return out

    def campaign_item(self, cid: str) -> dict[str, Any]:
        d = self.defined.get(cid) or {}
        runs = self.runs_of(cid)
        started = [self.claimed[r] for r in runs if r in self.claimed]
        latest = self.latest(cid)
        return {
            "campaign_id": cid, "name": d.get("name"), "channel": d.get("channel"),
            "channel_name": (d.get("channel_name") or d.get("channel")) if d else None,
            "run_count": len(runs), "last_run_at": fmt(max(started)) if started else None,
            "latest_run": None if latest is None else {
                "run_id": latest, "status": self.status(latest),
                "outcome": self.outcome(latest),
                "run_number": self.run_numbers(cid)[latest]},
            "delivery_rate": self.delivery_rate(runs),
        }

    def delivery_rate(self, runs: list[str]) -> float | None:
        """delivered / sent over the runs, 4 decimals; None when nothing was sent."""
        counts = [self.counts(r) for r in runs]
        sent = sum(c["sent"] for c in counts)
        return None if sent == 0 else round(sum(c["delivered"] for c in counts) / sent, 4)

    def batches(self, cid: str) -> list[dict[str, Any]]:
        floor = datetime.min.replace(tzinfo=UTC)
        keys = [bk for bk in self.batch_events if self.run_campaign[bk[0]] == cid]

        def seq(bk: tuple[str, str]) -> int | None:
            created = [e for e in self.batch_events[bk] if e["type"] == "batch.created"]
            return min(e["batch_sequence"] for e in created) if created else None

        def order(bk: tuple[str, str]) -> tuple[Any, ...]:
            at = self.scheduled_at(bk[0])
            # newest run first (unscheduled last), run_id desc, then sequence, batch id
            return (at is None, -(at or floor).timestamp(), _neg(bk[0]), seq(bk) is None,
                    seq(bk) or 0, bk[1])

        out = []
        for bk in sorted(keys, key=order):
            rid, bid = bk
            evs = self.batch_events[bk]
            created = [e for e in evs if e["type"] == "batch.created"]
            first = min(created, key=lambda e: e["batch_sequence"]) if created else None
            started = [ts(e["occurred_at"]) for e in evs if e["type"] == "batch.started"]
            terms = [e for e in evs if e["type"] in ("batch.completed", "batch.failed")]
            term = min(terms, key=key) if terms else None
            counters = dict.fromkeys(("pending", "sent", "delivered", "failed", "skipped",
                                      "retrying"), 0)
            sent = failed = 0
            for r in self.recipients(rid):
                w = self.winning.get((rid, r))
                member = self.members.get((rid, r))
                home = member[1] if member else (w["batch_id"] if w else None)
                if home == bid:
                    counters[self.bucket(rid, r)] += 1
                if w is not None and w["batch_id"] == bid:
                    sent += w["outcome"] == "sent"
                    failed += w["outcome"] == "failed"
            out.append({
                "batch_id": bid, "run_id": rid, "batch_sequence": seq(bk),
                "status": self.batch_status(bk),
                "recipient_count": len(first["recipients"]) if first else 0,
                "sent_count": sent, "failed_count": failed, "counters": counters,
                "created_at": fmt(ts(first["occurred_at"])) if first else None,
                "started_at": fmt(min(started)) if started else None,
                "completed_at": fmt(ts(term["occurred_at"])) if term else None,
                "error_detail": term.get("error_detail") if term else None,
            })
        return out

    def recipient_items(self, rid: str, show_phone: bool = True) -> list[dict[str, Any]]:
        out = []
        for r in self.recipients(rid):
            member = self.members.get((rid, r))
            w = self.winning.get((rid, r))
            phone = member[2] if member else (w["phone_number"] if w else None)
            if not show_phone and phone is not None:
                phone = "*" * (len(phone) - 3) + phone[-3:]
            m = self.message.get(w["message_id"]) if w and w.get("message_id") else None
            attempts = []
            for (run, rr, a), e in sorted(self.attempts.items()):
                if run != rid or rr != r:
                    continue
                am = self.message.get(e["message_id"]) if e.get("message_id") else None
                attempts.append({
                    "attempt": a, "outcome": e["outcome"], "message_id": e.get("message_id"),
                    "batch_id": e["batch_id"], "submitted_at": fmt(ts(e["occurred_at"])),
                    "reason": e.get("reason"),
                    "delivery_status": am["status"] if am else None,
                    "delivery_reported_at": fmt(ts(am["occurred_at"])) if am else None,
                })
            msg_status = None
            if w is not None and w.get("message_id"):
                msg_status = m["status"] if m else ("sent" if w["outcome"] == "sent" else None)
            out.append({
                "recipient_id": r, "phone_number": phone,
                "batch_id": member[1] if member else (w["batch_id"] if w else None),
                "batch_sequence": member[0] if member else None,
                "recipient_status": self.f11(rid, r),
                "attempt": (w.get("attempt", 1) or 1) if w else None,
                "message_id": w.get("message_id") if w else None,
                "message_status": msg_status,
                "sent_at": fmt(ts(w["occurred_at"])) if w and w["outcome"] == "sent" else None,
                "attempts": attempts,
            })
        return out


def _neg(s: str) -> tuple[int, ...]:
    """A key that sorts strings in descending order."""
    return tuple(-ord(ch) for ch in s) + (1,)
