"""The runs' delivery insight in SQL: ``projector.fold.insight``'s facts, set-based.

The Python fold hands the writer its differences (``Changes.insight``); the
set-based rebuild counts every recipient's facts once, and the set-based merge
counts the facts of the recipients it rewrites before and after (the same
difference). All three end in ``run_insight`` holding, per run and fact, how
many recipients count in it, never 0: the property tests hold them equal.
"""

from __future__ import annotations

from projector.fold.insight import (
    ATTEMPT,
    ATTEMPTS,
    ERROR_CODE_CHARS,
    LATENCY,
    LATENCY_DIGITS,
    REASON_CHARS,
    REPORT,
    SKEWED,
    SUBMIT,
    TIMELINE,
)
from projector.store.tables import INSIGHT

_RUN = "workspace_id, campaign_id, run_id"
KEY = ", ".join(INSIGHT.key)
_TERMINAL = "('delivered', 'undelivered', 'expired', 'rejected', 'failed')"
_FAILED = "('undelivered', 'expired', 'rejected', 'failed')"


def shown_sql(column: str, limit: int) -> str:
    """``insight.shown``: ASCII control characters as spaces, cut to ``limit`` characters."""
    return f"left(regexp_replace({column}, '[[:cntrl:]]', ' ', 'g'), {int(limit)})"


def _floor_div(expr: str, d: int) -> str:
    """Python's ``//`` (DuckDB's integer ``//`` truncates towards 0)."""
    return f"(CASE WHEN {expr} >= 0 THEN ({expr}) // {d} ELSE -((-({expr}) - 1) // {d}) - 1 END)"


def _minute(ts: str) -> str:
    return _floor_div(f"epoch_us({ts})", 60_000_000)


def _latency_value(ms: str) -> str:
    """``insight.latency_value`` of a non-negative BIGINT."""
    digits = f"length(CAST({ms} AS VARCHAR))"
    width = f"CAST(pow(10, greatest({digits} - {LATENCY_DIGITS}, 0)) AS BIGINT)"
    return f"({ms} - {ms} % {width})"


def contributions(rc: str) -> str:
    """One row per fact of each recipient of the relation ``rc`` (the recipients
    table's columns): the insight key columns, as ``insight.contributions`` yields."""
    submitted = f"FROM {rc} WHERE outcome IS NOT NULL AND submitted_at IS NOT NULL"
    reported = (
        f"{submitted} AND outcome = 'sent' AND delivery_reported_at IS NOT NULL "
        "AND delivery_status"
    )
    us = "(epoch_us(delivery_reported_at) - epoch_us(submitted_at))"
    reason = shown_sql("reason", REASON_CHARS)
    code = shown_sql("delivery_error_code", ERROR_CODE_CHARS)
    return f"""
SELECT {_RUN}, '{TIMELINE}' AS kind, outcome AS label, '' AS text, false AS text_null,
       {_minute("submitted_at")} AS value {submitted}
UNION ALL
SELECT {_RUN}, '{ATTEMPT}', outcome, '', false, attempt {submitted} AND attempt IS NOT NULL
UNION ALL
SELECT {_RUN}, '{SUBMIT}', outcome, coalesce({reason}, ''), reason IS NULL, 0
{submitted} AND outcome <> 'sent'
UNION ALL
SELECT {_RUN}, '{TIMELINE}',
       CASE WHEN delivery_status = 'delivered' THEN 'delivered' ELSE 'failed_delivery' END,
       '', false, {_minute("delivery_reported_at")} {reported} IN {_TERMINAL}
UNION ALL
SELECT {_RUN}, '{REPORT}', delivery_status, coalesce({code}, ''), delivery_error_code IS NULL, 0
{reported} IN {_FAILED}
UNION ALL
SELECT {_RUN}, '{LATENCY}', '', '', false, {_latency_value(f"(greatest({us}, 0) // 1000)")}
{reported} = 'delivered'
UNION ALL
SELECT {_RUN}, '{SKEWED}', '', '', false, 0
{reported} = 'delivered' AND delivery_reported_at < submitted_at"""


def counted(rc: str, sign: int = 1) -> str:
    """The facts of ``rc`` counted per key (times ``sign``): rows of ``run_insight``."""
    return f"SELECT {KEY}, {int(sign)} * count(*) AS n FROM ({contributions(rc)}) GROUP BY ALL"


def attempt_rows(attempts: str) -> str:
    """The ``attempts`` fact of each run: how many rows of the relation ``attempts``
    (key columns of the attempts table, each key once) it has."""
    return (
        f"SELECT {_RUN}, '{ATTEMPTS}' AS kind, '' AS label, '' AS text, false AS text_null, "
        f"0 AS value, count(*) AS n FROM {attempts} GROUP BY ALL"
    )


def merge_delta(delta: str) -> tuple[str, str]:
    """Statements adding the counts of ``delta`` (key columns and ``n``, each key once)
    to ``run_insight``, then dropping the counts that became 0."""
    return (
        f"INSERT INTO run_insight BY NAME SELECT {KEY}, n FROM {delta} WHERE n <> 0 "
        "ON CONFLICT DO UPDATE SET n = n + excluded.n",
        "DELETE FROM run_insight WHERE n = 0",
    )
