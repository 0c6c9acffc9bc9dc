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

from collections.abc import Callable, Iterable, Mapping

import duckdb

from projector.fold.rows import CampaignKey, RunRow
from projector.store.errors import InvariantError, StoreError
from projector.store.tables import RUNS

# (heads of the campaign id, i.e. {workspace_id: position}; runs of the workspace's campaign)
Polled = Callable[[str, str], tuple[Mapping[str, int], list[RunRow]]]

# What a poll would find in DuckDB for these campaigns, for many at once and in
# one statement (DuckDB's cost per statement is milliseconds): whether the
# campaign exists and its position, as api.queries.CAMPAIGN_HEADS reads them,
# then one row per run (run columns NULL: no run).
_MEMORY = (
    "SELECT k.workspace_id, k.campaign_id, c.campaign_id IS NOT NULL, coalesce(p.position, 0), "
    + ", ".join(f"r.{c.strip()}" for c in RUNS.select_list.split(","))
    + " FROM (SELECT unnest(CAST(? AS VARCHAR[])) AS workspace_id, "
    "unnest(CAST(? AS VARCHAR[])) AS campaign_id) k "
    "LEFT JOIN campaigns c USING (workspace_id, campaign_id) "
    "LEFT JOIN campaign_positions p USING (workspace_id, campaign_id) "
    "LEFT JOIN runs r USING (workspace_id, campaign_id)"
)


def check_memory(
    con: duckdb.DuckDBPyConnection, seq: int, campaigns: Iterable[CampaignKey], polled: Polled
) -> None:
    """Compare ``polled`` (the writer's memory) with DuckDB for ``campaigns`` after flush ``seq``.

    ``con`` must see exactly what flush ``seq`` committed: the writer's own
    connection, called while it still holds its lock (no flush can commit in
    between). Raises ``InvariantError`` at the first campaign that differs.
    """
    keys = sorted(set(campaigns))
    if not keys:
        return
    positions: dict[CampaignKey, int] = {}
    runs: dict[CampaignKey, dict[str, RunRow]] = {}
    try:
        rows = con.execute(_MEMORY, [[k[0] for k in keys], [k[1] for k in keys]]).fetchall()
    except duckdb.Error as e:
        raise StoreError(f"the invariant check of flush {seq} could not read DuckDB: {e}") from e
    for t in rows:
        key, known, pos, run = (t[0], t[1]), t[2], t[3], t[4:]
        if known:
            positions[key] = int(pos)
        if run[0] is not None:
            row: RunRow = RUNS.from_tuple(run)
            runs.setdefault(key, {})[row.run_id] = row
    for ws, cid in keys:
        heads, mem_runs = polled(ws, cid)
        mem_head, db_head = heads.get(ws), positions.get((ws, cid))
        name = f"campaign {cid} of workspace {ws}"
        if mem_head != db_head:
            raise InvariantError(
                f"after flush {seq}, {name}: memory holds position {_head(mem_head)}, "
                f"DuckDB {_head(db_head)}"
            )
        mem = {r.run_id: r for r in mem_runs}
        db = runs.get((ws, cid), {})
        if mem != db:
            raise InvariantError(
                f"after flush {seq}, {name}: memory holds runs "
                f"{_runs(mem, db)}, DuckDB {_runs(db, mem)}"
            )


def _head(position: int | None) -> str:
    return "none (unknown campaign)" if position is None else str(position)


def _runs(these: dict[str, RunRow], other: dict[str, RunRow]) -> str:
    """The runs of ``these`` that ``other`` lacks or holds otherwise, in full."""
    differ = [these[rid] for rid in sorted(these) if other.get(rid) != these[rid]]
    missing = sorted(set(other) - set(these))
    text = "; ".join(repr(r) for r in differ) or "nothing else"
    return text + (f" (and not {', '.join(missing)})" if missing else "")
