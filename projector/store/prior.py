"""The rows a micro-batch reads before it is folded: from the row cache, else DuckDB.

``projector.fold.plan.plan_loads`` names the keys a batch may read; this
loads them as a ``DictPrior`` for the pure fold. Delivery reports also need
the recipients whose winning submit names their message (holders): the cache
knows them once it has seen them, else an index lookup by the run's key and
message id finds them. Batches named by stored winning submits can only be
named once those recipients are loaded: a second, short phase.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import duckdb

from projector.fold.plan import LoadPlan, submit_batch_keys
from projector.fold.prior import DictPrior
from projector.fold.rows import MessageKey, RecipientKey
from projector.store import keyed
from projector.store.keyed import select_keys, semi_join
from projector.store.rowcache import MISSING, RowCache
from projector.store.tables import (
    ATTEMPTS,
    BATCHES,
    CAMPAIGNS,
    MESSAGES,
    RECIPIENTS,
    RUN_KEY,
    RUNS,
    SNAPSHOTS,
    Table,
)


class PriorLoader:
    """Loads a plan's rows for the writer's connection, through its row cache."""

    def __init__(self, con: Callable[[], duckdb.DuckDBPyConnection], cache: RowCache) -> None:
        self._con = con
        self.cache = cache
        self._large_tables: set[str] = set()

    def large(self, table: Table) -> bool:
        """Whether ``table`` holds enough rows that keys in no order go in chunks.

        Counted until it is: a writer's tables do not shrink, so a large
        store asks nothing more on its flushes (docs/decisions/0021-message-id-key-chunks.md).
        """
        if table.name not in self._large_tables:
            con = self._con()
            n = con.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]  # type: ignore[index]
            if n >= keyed.KEY_CHUNK_MIN_ROWS:
                self._large_tables.add(table.name)
        return table.name in self._large_tables

    def load(self, plan: LoadPlan) -> DictPrior:
        """Rows the plan names: from the cache, else one query per table."""
        prior = DictPrior()
        cache = self.cache
        run_ids = sorted({k[2] for k in plan.run_keys})  # a coarse filter (zone maps)
        prior.campaigns.update(self._load(CAMPAIGNS, plan.campaign_keys))
        prior.recipients.update(self._load(RECIPIENTS, plan.recipient_keys, runs=run_ids))
        ask: list[MessageKey] = []
        for mkey in plan.dlr_message_keys:
            known = cache.known_holders(mkey)
            if known is None:
                ask.append(mkey)
            else:
                prior.by_message[mkey] = list(known)
                for key in known:
                    row = cache.tables["recipients"].get(key)
                    if row is not None and row is not MISSING:
                        prior.recipients[key] = row
        if ask:
            self._load_holders(ask, prior)
        for key, row in prior.recipients.items():
            if row.message_id is None:
                continue
            mkey = (*key[:3], row.message_id)
            if mkey in plan.dlr_message_keys:
                holders_of = prior.by_message.setdefault(mkey, [])
                if key not in holders_of:
                    holders_of.append(key)
        prior.runs.update(self._load(RUNS, plan.run_keys))
        prior.snapshots.update(self._load(SNAPSHOTS, plan.run_keys))
        prior.messages.update(self._load(MESSAGES, plan.message_keys))
        prior.attempts.update(self._load(ATTEMPTS, plan.attempt_keys))
        batch_keys = set(plan.batch_keys) | submit_batch_keys(prior.recipients.values())
        prior.batches.update(self._load(BATCHES, batch_keys))
        return prior

    def _load_holders(self, ask: list[MessageKey], prior: DictPrior) -> None:
        """Recipients holding these messages, from DuckDB; remembered in the cache."""
        holders: dict[MessageKey, set[RecipientKey]] = {mkey: set() for mkey in ask}
        found = {}
        # F12: a report reaches only recipients of the run it names, so holders
        # match on the run's key and the message id (through the
        # recipients_by_message index when chunked).
        chunked = self.large(RECIPIENTS)
        on = (*RUN_KEY, "message_id")
        for t in semi_join(self._con(), RECIPIENTS, on, ask, chunked=chunked):
            row = RECIPIENTS.from_tuple(t)
            key = row.key
            found[key] = prior.recipients.get(key, row)
            holders[(*key[:3], row.message_id)].add(key)
        self.cache.remember(RECIPIENTS.name, list(found), found)
        prior.recipients.update(found)
        for mkey, keys in holders.items():
            self.cache.remember_holders(mkey, keys)

    def _load(
        self, table: Table, keys: Iterable[Any], *, runs: list[str] | None = None
    ) -> dict[Any, Any]:
        found, unknown = self.cache.split(table.name, keys)
        if unknown:
            chunked = table is MESSAGES and self.large(MESSAGES)  # message ids: in no order
            rows = select_keys(self._con(), table, unknown, runs=runs, chunked=chunked)
            self.cache.remember(table.name, unknown, rows)
            found.update(rows)
        return found
