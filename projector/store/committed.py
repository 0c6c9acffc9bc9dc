"""What the API reads from the writer's memory: every campaign's heads and runs as committed.

Status and analytics polls are answered from here, never from DuckDB: a
campaign's position (the flush that last changed it, its ETag) and its runs.
The writer notes each flush after its COMMIT, runs before heads, under a lock
that ``polled`` takes too, so a reader gets a campaign's heads and runs as of
one flush (issue 31: a DuckDB position paired with older runs in memory once
cached NO_RUN for good). Inner dicts are replaced, never changed, so readers in
other threads can hold them without the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

import duckdb

from projector.fold.prior import Changes
from projector.fold.rows import CampaignKey, RunRow
from projector.store.invariants import check_memory
from projector.store.tables import RUNS

_NO_HEADS: Mapping[str, int] = {}


class Committed:
    """Heads (campaign id -> {workspace_id: position}) and runs per campaign, as committed."""

    def __init__(self) -> None:
        # Per campaign id, one position per workspace (F12): the API tells a
        # campaign of another workspace (403) from an unknown one (404) here.
        self._heads: dict[str, dict[str, int]] = {}
        self._runs: dict[CampaignKey, dict[str, RunRow]] = {}
        self._noting = threading.Lock()

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Everything as the database holds it (at open, after a rebuild)."""
        heads: dict[str, dict[str, int]] = {}
        for ws, cid, pos in con.execute(
            "SELECT c.workspace_id, c.campaign_id, coalesce(p.position, 0) "
            "FROM campaigns c LEFT JOIN campaign_positions p USING (workspace_id, campaign_id)"
        ).fetchall():
            heads.setdefault(cid, {})[ws] = int(pos)
        runs: dict[CampaignKey, dict[str, RunRow]] = {}
        for t in con.execute(f"SELECT {RUNS.select_list} FROM runs").fetchall():
            row: RunRow = RUNS.from_tuple(t)
            runs.setdefault(row.campaign_key, {})[row.run_id] = row
        with self._noting:
            self._heads, self._runs = heads, runs

    def note(self, runs: Iterable[RunRow], changed: Iterable[CampaignKey], seq: int) -> None:
        """A committed flush: its new run rows, then ``seq`` as the position of ``changed``.

        Runs before heads: a reader that sees a campaign's new position must
        find rows at least that new (the API caches payloads by position).
        """
        with self._noting:
            self.note_runs(runs)
            self.note_heads(changed, seq)

    def note_runs(self, runs: Iterable[RunRow]) -> None:
        for row in runs:
            key = row.campaign_key
            self._runs[key] = {**self._runs.get(key, {}), row.run_id: row}

    def note_heads(self, changed: Iterable[CampaignKey], seq: int) -> None:
        for ws, cid in changed:
            self._heads[cid] = {**self._heads.get(cid, _NO_HEADS), ws: seq}

    def heads(self, campaign_id: str) -> Mapping[str, int]:
        """{workspace_id: position} of the campaigns with this id; empty if none."""
        return self._heads.get(campaign_id, _NO_HEADS)

    def runs_of(self, campaign: CampaignKey) -> list[RunRow]:
        return list(self._runs.get(campaign, {}).values())

    def polled(self, workspace_id: str, campaign_id: str) -> tuple[Mapping[str, int], list[RunRow]]:
        """The heads of a campaign id and the runs of the workspace's campaign of that
        id, as of one flush; ``({}, [])`` if never seen.

        ``heads`` then ``runs_of`` may straddle a flush being noted: runs of
        flush n+1 read under the position of flush n, and a payload built
        from them cached there, while another reader caches flush n's own
        under it; one poller could then see a run go back.
        """
        with self._noting:
            heads = self._heads.get(campaign_id, _NO_HEADS)
            return heads, list(self._runs.get((workspace_id, campaign_id), {}).values())

    def check(
        self, con: duckdb.DuckDBPyConnection, changes: Changes, changed: set[CampaignKey], seq: int
    ) -> None:
        """The invariant mode: memory against DuckDB for every campaign flush ``seq`` touched.

        ``con`` must show exactly what flush ``seq`` committed (the writer's
        connection, its lock still held).
        """
        touched = set(changed) | set(changes.campaigns)
        touched.update(row.campaign_key for row in changes.runs.values())
        check_memory(con, seq, touched, self.polled)
