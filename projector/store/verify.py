"""``projector verify``: do two databases hold the same projections?

Compares every projection table (``projector.store.tables.PROJECTIONS``) row by row
by primary key, inside one in-memory DuckDB with both files attached
read-only: a full outer join on the key finds rows missing on either side and
rows whose columns differ (``IS DISTINCT FROM``, so NULLs compare equal).

Not compared: ``source_offsets``, ``campaign_positions``, ``projector_meta``
and ``deadletters`` bookkeeping that depends on batching and on where a
database started. The offsets are shown for information.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from projector.store.connection import version_refusal
from projector.store.errors import VerifyError
from projector.store.shards import shard_path, stored_partitions
from projector.store.tables import PROJECTIONS, SCHEMA_VERSION, Table

SAMPLE_ROWS = 5


@dataclass
class TableDiff:
    name: str
    rows_a: int
    rows_b: int
    only_a: int = 0
    only_b: int = 0
    changed: int = 0
    # (key, {column: (value in A, value in B)}); a missing side shows as None for every column.
    samples: list[tuple[tuple[Any, ...], dict[str, tuple[Any, Any]]]] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.only_a or self.only_b or self.changed)


@dataclass
class Diff:
    path_a: Path
    path_b: Path
    tables: list[TableDiff]
    offsets_a: dict[tuple[str, int], int]
    offsets_b: dict[tuple[str, int], int]

    @property
    def identical(self) -> bool:
        return all(t.identical for t in self.tables)

    def render(self) -> str:
        lines = [f"A = {self.path_a}", f"B = {self.path_b}", ""]
        lines.append(
            f"{'table':<12} {'rows A':>10} {'rows B':>10} {'only A':>8} {'only B':>8} {'differ':>8}"
        )
        for t in self.tables:
            mark = "" if t.identical else "  <-- differs"
            lines.append(
                f"{t.name:<12} {t.rows_a:>10,} {t.rows_b:>10,} {t.only_a:>8,} {t.only_b:>8,} "
                f"{t.changed:>8,}{mark}"
            )
        for t in self.tables:
            if t.identical:
                continue
            lines.append("")
            lines.append(f"{t.name}: first {len(t.samples)} differing rows")
            for key, cols in t.samples:
                lines.append(f"  key {key!r}")
                for col, (a, b) in cols.items():
                    lines.append(f"    {col}: A={_short(a)}  B={_short(b)}")
        lines.append("")
        lines.append("source offsets (not compared; they depend on batching and start):")
        for tp in sorted(set(self.offsets_a) | set(self.offsets_b)):
            a, b = self.offsets_a.get(tp, "-"), self.offsets_b.get(tp, "-")
            lines.append(f"  {tp[0]}[{tp[1]}]: A={a}  B={b}")
        lines.append("")
        lines.append("IDENTICAL projections" if self.identical else "DIFFERENT projections")
        return "\n".join(lines)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _compare_table(con: duckdb.DuckDBPyConnection, table: Table, samples: int) -> TableDiff:
    name = table.name
    cols = [c.name for c in table.columns]
    key = list(table.key)
    on = " AND ".join(f"a.{k} = b.{k}" for k in key)
    differs = " OR ".join(f"a.{c} IS DISTINCT FROM b.{c}" for c in cols if c not in key)
    base = f"FROM a.{name} AS a FULL OUTER JOIN b.{name} AS b ON {on}"
    rows_a = con.execute(f"SELECT count(*) FROM a.{name}").fetchone()[0]  # type: ignore[index]
    rows_b = con.execute(f"SELECT count(*) FROM b.{name}").fetchone()[0]  # type: ignore[index]
    k0 = key[0]
    only_a, only_b, changed = con.execute(
        f"""SELECT count(*) FILTER (WHERE b.{k0} IS NULL),
                   count(*) FILTER (WHERE a.{k0} IS NULL),
                   count(*) FILTER (WHERE a.{k0} IS NOT NULL AND b.{k0} IS NOT NULL AND ({differs}))
            {base}"""
    ).fetchone()  # type: ignore[misc]
    diff = TableDiff(name, rows_a, rows_b, only_a, only_b, changed)
    if diff.identical or samples <= 0:
        return diff
    select = ", ".join(
        [f"coalesce(a.{k}, b.{k})" for k in key]
        + [f"a.{k0} IS NOT NULL", f"b.{k0} IS NOT NULL"]
        + [f"a.{c}" for c in cols]
        + [f"b.{c}" for c in cols]
    )
    order = ", ".join(f"coalesce(a.{k}, b.{k})" for k in key)
    rows = con.execute(
        f"SELECT {select} {base} WHERE a.{k0} IS NULL OR b.{k0} IS NULL OR ({differs}) "
        f"ORDER BY {order} LIMIT {int(samples)}"
    ).fetchall()
    n, m = len(key), len(cols)
    for row in rows:
        k = tuple(row[:n])
        has_a, has_b = row[n], row[n + 1]
        va, vb = row[n + 2 : n + 2 + m], row[n + 2 + m :]
        if has_a and has_b:
            cols_diff = {c: (x, y) for c, x, y in zip(cols, va, vb, strict=True) if x != y}
        else:
            cols_diff = {
                "(row)": ("present" if has_a else "missing", "present" if has_b else "missing")
            }
        diff.samples.append((k, cols_diff))
    return diff


def _offsets(con: duckdb.DuckDBPyConnection, alias: str) -> dict[tuple[str, int], int]:
    rows = con.execute(
        f"SELECT topic, partition, next_offset FROM {alias}.source_offsets"
    ).fetchall()
    return {(t, p): o for t, p, o in rows}


def compare(path_a: Path | str, path_b: Path | str, *, samples: int = SAMPLE_ROWS) -> Diff:
    """Compare the projections of two databases, each a file or a data directory of
    shards (``projector.store.shards``: compared as the union of its shards), all
    opened read-only. A file against a directory compares one node's file with
    another layout of the same events.

    Raises:
        VerifyError: a file is missing, locked by a writer, or not a projector database.
    """
    path_a, path_b = Path(path_a), Path(path_b)
    con = duckdb.connect(":memory:")
    try:
        for alias, path in (("a", path_a), ("b", path_b)):
            if not path.exists():
                raise VerifyError(f"{path} does not exist")
            if path.is_dir():
                _attach_shards(con, alias, path)
            else:
                _attach(con, alias, path)
        try:
            diffs = [_compare_table(con, table, samples) for table in PROJECTIONS]
            return Diff(path_a, path_b, diffs, _offsets(con, "a"), _offsets(con, "b"))
        except duckdb.Error as e:
            raise VerifyError(f"comparing {path_a} and {path_b} failed: {e}") from e
    finally:
        con.close()


def _attach(con: duckdb.DuckDBPyConnection, alias: str, path: Path) -> None:
    """``path`` read-only as catalog ``alias``, once it is known to be a projector database
    of this layout."""
    try:
        con.execute(f"ATTACH ? AS {alias} (READ_ONLY)", [str(path)])
    except duckdb.Error as e:
        raise VerifyError(f"cannot open {path} read-only: {e}") from e
    tables = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [alias]
        ).fetchall()
    }
    version = None
    if "projector_meta" in tables:
        version = con.execute(
            f"SELECT value FROM {alias}.projector_meta WHERE key = 'schema_version'"
        ).fetchone()
    if version is not None and int(version[0]) != SCHEMA_VERSION:
        # Rows of another layout would all differ, or worse, seem to agree.
        raise VerifyError(version_refusal(path, int(version[0])))
    missing = [t.name for t in PROJECTIONS if t.name not in tables] + [
        t for t in ("source_offsets", "projector_meta") if t not in tables
    ]
    if missing:
        raise VerifyError(f"{path} is not a projector database (no {', '.join(missing)})")


def _attach_shards(con: duckdb.DuckDBPyConnection, alias: str, root: Path) -> None:
    """Every shard in ``root``, and a schema ``alias`` whose tables are their union
    (campaigns never share rows, so the union is the node's projections)."""
    partitions = stored_partitions(root)
    if not partitions:
        raise VerifyError(f"{root} holds no shards (partition-NNNN.duckdb)")
    for p in partitions:
        _attach(con, f"{alias}_{p}", shard_path(root, p))
    con.execute(f"CREATE SCHEMA {alias}")
    for name in [t.name for t in PROJECTIONS] + ["source_offsets"]:
        union = " UNION ALL ".join(f"SELECT * FROM {alias}_{p}.{name}" for p in partitions)
        con.execute(f"CREATE VIEW {alias}.{name} AS {union}")
