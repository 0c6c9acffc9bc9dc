"""The invariant mode: after a flush, the writer's memory must equal DuckDB.

Status and analytics polls are answered from memory kept beside the flush
(``Store.polled``: a campaign's head, i.e. workspace and position, and its
runs), never from DuckDB. So memory is only as right as the code that keeps
it. With ``PROJECTOR_CHECK_INVARIANTS=1`` every flush ends by computing the
same heads and runs from DuckDB for every campaign it touched and comparing;
the first difference raises ``InvariantError`` naming the campaign, the flush
and both values. Off by default: it costs a query per flush
(docs/reliability.md has the figures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import duckdb

from projector.errors import InvariantError, StoreError
from projector.rows import RunRow
from projector.tables import RUNS

Head = tuple[str, int]  # (workspace_id, position)

# What a poll would find in DuckDB for these campaigns, for many at once and in
# one statement (DuckDB's cost per statement is milliseconds): the head as
# api.queries.CAMPAIGN_HEAD reads it (workspace NULL: no campaign row), then
# one row per run (run columns NULL: no run).
_MEMORY = (
    "SELECT k.campaign_id, c.workspace_id, coalesce(p.position, 0), "
    + ", ".join(f"r.{c.strip()}" for c in RUNS.select_list.split(","))
    + " FROM (SELECT unnest(CAST(? AS VARCHAR[])) AS campaign_id) k "
    "LEFT JOIN campaigns c USING (campaign_id) "
    "LEFT JOIN campaign_positions p USING (campaign_id) "
    "LEFT JOIN runs r ON r.campaign_id = k.campaign_id"
)


def check_memory(
    con: duckdb.DuckDBPyConnection,
    seq: int,
    campaigns: Iterable[str],
    polled: Callable[[str], tuple[Head, list[RunRow]] | None],
) -> None:
    """Compare ``polled`` (the writer's memory) with DuckDB for ``campaigns`` after flush ``seq``.

    ``con`` must see exactly what flush ``seq`` committed: the writer's own
    connection, called while it still holds its lock (no flush can commit in
    between). Raises ``InvariantError`` at the first campaign that differs.
    """
    ids = sorted(set(campaigns))
    if not ids:
        return
    heads: dict[str, Head] = {}
    runs: dict[str, dict[str, RunRow]] = {}
    try:
        for t in con.execute(_MEMORY, [ids]).fetchall():
            cid, ws, pos, run = t[0], t[1], t[2], t[3:]
            if ws is not None:
                heads[cid] = (ws, int(pos))
            if run[0] is not None:
                row: RunRow = RUNS.from_tuple(run)
                runs.setdefault(row.campaign_id, {})[row.run_id] = row
    except duckdb.Error as e:
        raise StoreError(f"the invariant check of flush {seq} could not read DuckDB: {e}") from e
    for cid in ids:
        memory = polled(cid)
        mem_head, mem_runs = (None, {}) if memory is None else (
            memory[0], {r.run_id: r for r in memory[1]}
        )
        db_head, db_runs = heads.get(cid), runs.get(cid, {})
        if mem_head != db_head:
            raise InvariantError(
                f"after flush {seq}, campaign {cid}: memory holds head {_head(mem_head)}, "
                f"DuckDB {_head(db_head)}"
            )
        if mem_runs != db_runs:
            raise InvariantError(
                f"after flush {seq}, campaign {cid}: memory holds runs "
                f"{_runs(mem_runs, db_runs)}, DuckDB {_runs(db_runs, mem_runs)}"
            )


def _head(head: Head | None) -> str:
    return "none" if head is None else f"(workspace {head[0]}, position {head[1]})"


def _runs(these: dict[str, RunRow], other: dict[str, RunRow]) -> str:
    """The runs of ``these`` that ``other`` lacks or holds otherwise, in full."""
    differ = [these[rid] for rid in sorted(these) if other.get(rid) != these[rid]]
    missing = sorted(set(other) - set(these))
    text = "; ".join(repr(r) for r in differ) or "nothing else"
    return text + (f" (and not {', '.join(missing)})" if missing else "")
