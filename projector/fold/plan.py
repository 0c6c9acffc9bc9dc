"""The keys of the rows a micro-batch may read: what a store loads before the fold runs.

Pure: derived from the events (and, for the second phase, from the stored
recipients loaded in the first), so a store reads each key at most once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from projector.fold.rows import (
    AttemptKey,
    BatchKey,
    CampaignKey,
    MessageKey,
    RecipientKey,
    RecipientRow,
    RunKey,
)


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Keys of the rows a batch of events may read, for a store to preload.

    ``batch_keys`` is completed by ``submit_batch_keys`` once recipients are
    loaded: a retry that wins moves a count away from the *previous* winning
    submit's batch, which only the stored recipient row names.
    """

    campaign_keys: frozenset[CampaignKey]
    run_keys: frozenset[RunKey]
    batch_keys: frozenset[BatchKey]
    recipient_keys: frozenset[RecipientKey]
    message_keys: frozenset[MessageKey]
    dlr_message_keys: frozenset[MessageKey]
    attempt_keys: frozenset[AttemptKey] = frozenset()


def plan_loads(events: Iterable[Any]) -> LoadPlan:
    campaign_keys: set[CampaignKey] = set()
    run_keys: set[RunKey] = set()
    batch_keys: set[BatchKey] = set()
    recipient_keys: set[RecipientKey] = set()
    message_keys: set[MessageKey] = set()
    dlr_keys: set[MessageKey] = set()
    attempt_keys: set[AttemptKey] = set()
    for ev in events:
        ws, cid = ev.workspace_id, ev.campaign_id
        campaign_keys.add((ws, cid))
        run_id = getattr(ev, "run_id", None)
        if run_id is None:
            continue
        run_keys.add((ws, cid, run_id))
        t = ev.type
        if t == "message.submitted":
            recipient_keys.add((ws, cid, run_id, ev.recipient_id))
            attempt_keys.add((ws, cid, run_id, ev.recipient_id, ev.attempt))
            batch_keys.add((ws, cid, run_id, ev.batch_id))
            if ev.message_id is not None:
                message_keys.add((ws, cid, run_id, ev.message_id))
        elif t == "message.dlr":
            message_keys.add((ws, cid, run_id, ev.message_id))
            dlr_keys.add((ws, cid, run_id, ev.message_id))
        elif t.startswith("batch."):
            batch_keys.add((ws, cid, run_id, ev.batch_id))
            if t == "batch.created":
                for r in ev.recipients:
                    recipient_keys.add((ws, cid, run_id, r.recipient_id))
    return LoadPlan(
        frozenset(campaign_keys),
        frozenset(run_keys),
        frozenset(batch_keys),
        frozenset(recipient_keys),
        frozenset(message_keys),
        frozenset(dlr_keys),
        frozenset(attempt_keys),
    )


def submit_batch_keys(recipients: Iterable[RecipientRow]) -> set[BatchKey]:
    """Batches named by stored winning submits (second phase of a load)."""
    return {
        (r.workspace_id, r.campaign_id, r.run_id, r.submit_batch_id)
        for r in recipients
        if r.submit_batch_id is not None
    }
