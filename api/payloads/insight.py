"""Delivery insight payloads: timeline, failure reasons, delivery latency.

Pure functions from what ``api.readstore`` aggregates (rows in, dict out).
Every value comes from recipients' winning states (F4, F5) and their events'
own times, so the answers depend only on the set of events applied (F1, F2),
never on the order they came in or on a clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from api.payloads.campaign import iso
from api.readstore import FailureGroups, Groups, LatencyAggregates
from projector.fold.insight import ERROR_CODE_CHARS as ERROR_CODE_CHARS
from projector.fold.insight import LATENCY_DIGITS
from projector.fold.insight import REASON_CHARS as REASON_CHARS

# -- timeline ----------------------------------------------------------------------------------

Bucket = Literal["1m", "5m", "1h"]
BUCKETS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
}
# The default bucket by the run's span (first to last minute with an event, inclusive):
# at most 3 h in minutes, at most 24 h in 5 minutes (288 buckets), else hours.
DEFAULT_SPANS: tuple[tuple[timedelta, str], ...] = (
    (timedelta(hours=3), "1m"),
    (timedelta(hours=24), "5m"),
)
TIMELINE_KINDS = ("sent", "failed", "skipped", "delivered", "failed_delivery")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def default_bucket(minutes: list[datetime]) -> str:
    """The bucket for a run whose events fall in these minutes."""
    if not minutes:
        return "1m"
    span = max(minutes) - min(minutes) + BUCKETS["1m"]
    for limit, bucket in DEFAULT_SPANS:
        if span <= limit:
            return bucket
    return "1h"


def bucket_start(at: datetime, width: timedelta) -> datetime:
    """The start of the UTC-aligned bucket of ``width`` that holds ``at``."""
    return _EPOCH + ((at - _EPOCH) // width) * width


def timeline_payload(
    campaign_id: str,
    run_id: str,
    minutes: list[tuple[str, datetime, int]],
    bucket: str | None,
) -> dict[str, Any]:
    """Recipients per bucket of the winning events' time, and cumulative.

    ``minutes``: (kind, UTC minute, recipients). Buckets with no event are
    left out (the cumulative counts carry over them), so the answer's size
    is bounded by the run's events, not by its span.
    """
    chosen = bucket or default_bucket([at for _, at, _ in minutes])
    width = BUCKETS[chosen]
    per: dict[datetime, dict[str, int]] = {}
    for kind, at, n in minutes:
        counts = per.setdefault(bucket_start(at, width), dict.fromkeys(TIMELINE_KINDS, 0))
        counts[kind] += n
    running = dict.fromkeys(TIMELINE_KINDS, 0)
    buckets = []
    for start in sorted(per):
        counts = per[start]
        for k in TIMELINE_KINDS:
            running[k] += counts[k]
        buckets.append({"start": iso(start), "counts": counts, "cumulative": dict(running)})
    return {
        "campaign_id": campaign_id,
        "run_id": run_id,
        "bucket": chosen,
        "bucket_seconds": int(width.total_seconds()),
        "totals": running,
        "buckets": buckets,
    }


# -- failure reasons ---------------------------------------------------------------------------

# Groups listed per list before the rest is folded into ``other``.
FAILURES_TOP = 20
# Producer text is cut to REASON_CHARS / ERROR_CODE_CHARS characters (code points), after
# ASCII control characters became spaces, as the fold keeps it (projector.fold.insight);
# recipients whose texts agree after this are one group.


def _failure_list(groups: Groups, first: str, second: str) -> dict[str, Any]:
    listed, (rest, rest_groups) = groups
    items = [{first: a, second: b, "count": n} for a, b, n in listed]
    return {
        "total": sum(n for _, _, n in listed) + rest,
        "items": items,
        "other": {"count": rest, "groups": rest_groups},
    }


def failures_payload(
    campaign_id: str, run_id: str | None, groups: FailureGroups
) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "run_id": run_id,
        "limit": FAILURES_TOP,
        "submits": _failure_list(groups.submits, "outcome", "reason"),
        "reports": _failure_list(groups.reports, "status", "error_code"),
    }


# -- delivery latency --------------------------------------------------------------------------

# Histogram bucket edges in ms: bucket 0 is [0, 1 s), bucket i is [edge i-1, edge i),
# the last is [72 h, ...). Fixed, so histograms of runs and campaigns compare.
LATENCY_EDGES_MS: tuple[int, ...] = tuple(
    s * 1000 for s in (1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600, 72 * 3600)
)


# Latencies below this many ms are kept exactly; from it on, to 4 significant digits.
EXACT_BELOW_MS = 10**LATENCY_DIGITS


def latency_payload(campaign_id: str, run_id: str, agg: LatencyAggregates) -> dict[str, Any]:
    lows = (0, *LATENCY_EDGES_MS)
    highs: tuple[int | None, ...] = (*LATENCY_EDGES_MS, None)
    return {
        "campaign_id": campaign_id,
        "run_id": run_id,
        # Values of 10 s or more keep 4 significant digits (projector.fold.insight).
        "exact": agg.max_ms is None or agg.max_ms < EXACT_BELOW_MS,
        "delivered": agg.count,
        "clock_skewed": agg.skewed,
        "min_ms": agg.min_ms,
        "p50_ms": agg.p50_ms,
        "p90_ms": agg.p90_ms,
        "p99_ms": agg.p99_ms,
        "max_ms": agg.max_ms,
        "histogram": [
            {"from_ms": lo, "to_ms": hi, "count": n}
            for lo, hi, n in zip(lows, highs, agg.histogram, strict=True)
        ],
    }
