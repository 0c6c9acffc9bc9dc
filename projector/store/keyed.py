"""Rows by composite key: Arrow key tables, semi-joins, and chunks where keys are in no order.

Keys of rows below a run are clustered (rows are written run by run), so one
statement reads or writes all of a flush's. Message ids are in no order: in a
large table their keys go ``KEY_CHUNK`` at a time, which DuckDB answers from
an index; in one statement it would scan the table
(docs/decisions/0021-message-id-key-chunks.md).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from projector.store.tables import Table

# DuckDB's dynamic_or_filter_threshold (default 50): up to that many keys a join,
# and the conflict check of INSERT OR REPLACE, filters its scan by the key list,
# which it answers from an index; past it DuckDB scans the table. Past
# KEY_CHUNKED_MAX keys in one flush a single scan is cheaper, and so it is below
# KEY_CHUNK_MIN_ROWS stored rows (docs/decisions/0021-message-id-key-chunks.md).
KEY_CHUNK = 50
KEY_CHUNKED_MAX = 500
KEY_CHUNK_MIN_ROWS = 100_000


def steps(n: int, chunked: bool) -> int:
    """Keys per statement for ``n`` keys in no order: chunks that reach the index, or all."""
    return KEY_CHUNK if chunked and n <= KEY_CHUNKED_MAX else max(n, 1)


def key_table(columns: tuple[str, ...], keys: list[tuple[Any, ...]]) -> pa.Table:
    """Composite keys (at least one) as an Arrow table, one column per key column."""
    values = zip(*keys, strict=True)
    return pa.table({name: pa.array(col) for name, col in zip(columns, values, strict=True)})


def semi_join(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    on: tuple[str, ...],
    keys: list[Any],
    *,
    where: str = "",
    params: list[Any] | None = None,
    chunked: bool = False,
) -> list[tuple]:
    """Rows of ``table`` whose ``on`` columns match one of ``keys`` (tuples).

    With ``chunked`` (keys in no order, a large table) the keys go
    ``KEY_CHUNK`` at a time, which DuckDB answers from an index.
    """
    using = ", ".join(on)
    sql = f"SELECT {table.select_list} FROM {table.name} SEMI JOIN wanted USING ({using})"
    step = steps(len(keys), chunked)
    rows: list[tuple] = []
    for i in range(0, len(keys), step):
        wanted = key_table(on, keys[i : i + step])  # noqa: F841 (read by DuckDB by name)
        rows.extend(con.execute(sql + where, params or []).fetchall())
    return rows


def select_keys(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    keys: list[Any],
    *,
    runs: list[str] | None = None,
    chunked: bool = False,
) -> dict[Any, Any]:
    """Rows of ``table`` for ``keys`` (tuples in ``table.key`` order), by key."""
    where, params = "", []
    if runs and "run_id" in table.key:
        # A constant run list lets DuckDB skip row groups of other runs (zone maps).
        where = f" WHERE run_id IN ({', '.join('?' * len(runs))})"
        params = list(runs)
    out = {}
    for t in semi_join(con, table, table.key, keys, where=where, params=params, chunked=chunked):
        row = table.from_tuple(t)
        out[tuple(getattr(row, k) for k in table.key)] = row
    return out
