"""Delivery insight of a run, kept by the fold: what each recipient contributes.

A recipient's winning submit (F4) and its winning message's report (F5, copied
into its row) place it in the run's timeline (its submit's minute, and its
terminal report's), among the failure reasons (a failed or skipped submit's
reason, a failed report's status and error code) and in the latency
distribution (a delivered recipient's report time minus its sent time), and,
for the stats view, among the recipients by outcome and attempt. The
run's insight rows (``InsightRow``) count recipients per such fact; the fold
keeps them by difference, as it keeps the run's counters: a recipient that
changed takes its old contributions out and puts its new ones in. The set-based
paths compute the same facts in SQL (``projector.store.insight``).

Everything here is a function of one recipient row: no clock, no order (F1, F2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

from projector.fold.prior import Prior
from projector.fold.rows import (
    DLR_TERMINAL,
    AttemptKey,
    InsightKey,
    RecipientKey,
    RecipientRow,
)

TIMELINE, SUBMIT, REPORT, LATENCY, SKEWED = "timeline", "submit", "report", "latency", "skewed"
# The stats view's: recipients by winning submit outcome and attempt, and attempt rows.
ATTEMPT, ATTEMPTS = "attempt", "attempts"
# Producer text is kept as the API shows it: ASCII control characters become
# spaces, then it is cut to this many characters (code points). Recipients whose
# texts agree after that are one group.
REASON_CHARS = 200
ERROR_CODE_CHARS = 64
# Latencies keep 4 significant digits of their milliseconds: exact below 10 s,
# rounded down by less than 0.1% above (a run keeps at most 9,000 values per
# decade instead of one per delivered recipient). Every histogram edge of the
# API (whole seconds up to 72 h) is such a value, so its buckets stay exact.
LATENCY_DIGITS = 4

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)
_MICROSECOND = timedelta(microseconds=1)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown(text: str | None, limit: int) -> str | None:
    """Producer text as it is grouped and shown."""
    return None if text is None else _CONTROL.sub(" ", text)[:limit]


def minute_of(at: datetime) -> int:
    """Minutes since the epoch (UTC) of the minute holding ``at``."""
    return (at - _EPOCH) // _MINUTE


def minute_start(minute: int) -> datetime:
    """The UTC start of the minute ``minute_of`` numbers."""
    return _EPOCH + minute * _MINUTE


def latency_value(ms: int) -> int:
    """``ms`` (>= 0) rounded down to ``LATENCY_DIGITS`` significant digits."""
    width = 10 ** max(len(str(ms)) - LATENCY_DIGITS, 0)
    return ms - ms % width


def contributions(r: RecipientRow) -> Iterator[InsightKey]:
    """The insight facts one recipient row counts in (none before its first submit)."""
    outcome = r.outcome
    if outcome is None or r.submitted_at is None:
        return
    ws, cid, rid = r.workspace_id, r.campaign_id, r.run_id
    yield (ws, cid, rid, TIMELINE, outcome, "", False, minute_of(r.submitted_at))
    if r.attempt is not None:
        yield (ws, cid, rid, ATTEMPT, outcome, "", False, r.attempt)
    if outcome != "sent":
        reason = shown(r.reason, REASON_CHARS)
        yield (ws, cid, rid, SUBMIT, outcome, reason or "", reason is None, 0)
        return
    status, at = r.delivery_status, r.delivery_reported_at
    if status not in DLR_TERMINAL or at is None:
        return
    if status == "delivered":
        yield (ws, cid, rid, TIMELINE, "delivered", "", False, minute_of(at))
        us = (at - r.submitted_at) // _MICROSECOND
        # Clamped at 0: a report stamped before its submit (two clocks) is counted apart.
        yield (ws, cid, rid, LATENCY, "", "", False, latency_value(max(us, 0) // 1000))
        if us < 0:
            yield (ws, cid, rid, SKEWED, "", "", False, 0)
    else:
        yield (ws, cid, rid, TIMELINE, "failed_delivery", "", False, minute_of(at))
        code = shown(r.delivery_error_code, ERROR_CODE_CHARS)
        yield (ws, cid, rid, REPORT, status, code or "", code is None, 0)


def insight_delta(
    prior: Prior,
    changed: Mapping[RecipientKey, RecipientRow],
    attempts: Iterable[AttemptKey] = (),
) -> dict[InsightKey, int]:
    """The change of every insight count when ``changed`` replace their prior rows and
    the ``attempts`` rows are written (those new to ``prior`` count once per run)."""
    delta: dict[InsightKey, int] = {}
    for key in attempts:
        if prior.attempt(key) is None:
            fact = (key[0], key[1], key[2], ATTEMPTS, "", "", False, 0)
            delta[fact] = delta.get(fact, 0) + 1
    for key, row in changed.items():
        before = prior.recipient(key)
        if before is not None:
            for fact in contributions(before):
                delta[fact] = delta.get(fact, 0) - 1
        for fact in contributions(row):
            delta[fact] = delta.get(fact, 0) + 1
    return {fact: n for fact, n in delta.items() if n}
