"""The whole projection held in memory: the fold's reference store.

Tests fold event sets into a ``State`` and compare; the replay tool and the
simulator's self-check use it too. It implements the ``Prior`` read interface
over plain dicts, plus the two indexes a store needs (recipients by message,
recipients by run).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from projector.fold.prior import Changes, DictPrior
from projector.fold.rows import (
    BatchRow,
    CampaignKey,
    InsightKey,
    InsightRow,
    MessageKey,
    RecipientKey,
    RecipientRow,
    RunKey,
    RunRow,
)
from projector.fold.rules import fold


class State(DictPrior):
    """Every row, plus a recipients-by-run index; ``by_message`` kept complete."""

    def __init__(self) -> None:
        super().__init__()
        self.by_message: dict[MessageKey, set[RecipientKey]] = defaultdict(set)
        self._by_run: dict[RunKey, set[RecipientKey]] = defaultdict(set)
        self.insight: dict[InsightKey, InsightRow] = {}

    # -- writing -------------------------------------------------------------
    def apply(self, events: Iterable[Any]) -> Changes:
        changes = fold(self, events)
        self.merge(changes)
        return changes

    def merge(self, changes: Changes) -> None:
        self.campaigns.update(changes.campaigns)
        self.runs.update(changes.runs)
        self.batches.update(changes.batches)
        for key in changes.deleted_batches:
            del self.batches[key]
        for key, row in changes.recipients.items():
            run_key = key[:3]
            old = self.recipients.get(key)
            if old is not None and old.message_id is not None and old.message_id != row.message_id:
                self.by_message[(*run_key, old.message_id)].discard(key)
            if row.message_id is not None:
                self.by_message[(*run_key, row.message_id)].add(key)
            self._by_run[run_key].add(key)
            self.recipients[key] = row
        self.messages.update(changes.messages)
        self.snapshots.update(changes.snapshots)
        self.attempts.update(changes.attempts)
        for fact, delta in changes.insight.items():
            held = self.insight.get(fact)
            n = (held.n if held is not None else 0) + delta
            if n:
                self.insight[fact] = InsightRow(*fact, n=n)
            else:
                self.insight.pop(fact, None)
        for run_key in changes.sent_range_dirty:
            run = self.runs[run_key]
            sent = [
                r.sent_at
                for k in self._by_run.get(run_key, ())
                if (r := self.recipients[k]).sent_at
            ]
            run.first_sent_at = min(sent) if sent else None
            run.last_sent_at = max(sent) if sent else None

    # -- reading -------------------------------------------------------------
    def runs_of(self, campaign: CampaignKey) -> list[RunRow]:
        return [r for key, r in self.runs.items() if key[:2] == campaign]

    def batches_of(self, run: RunKey) -> list[BatchRow]:
        return [b for key, b in self.batches.items() if key[:3] == run]

    def recipients_of(self, run: RunKey) -> list[RecipientRow]:
        return [self.recipients[k] for k in self._by_run.get(run, ())]
