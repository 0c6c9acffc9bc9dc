"""The fold: events in, changed projection rows out. The reference statement of F1-F12.

Rebuilds from nothing use ``projector.store.setfold``, the same rules as set-based
SQL, and large live flushes ``projector.store.setmerge``, the same again onto stored
rows; ``tests/store/test_setfold.py`` and ``tests/store/test_setmerge.py`` hold
them equal to this fold, table for table, so a change to a rule here must be
made there too (the tests fail until it is).

``fold(prior, events)`` reads the rows an event batch touches through the
``Prior`` interface (the in-memory state in tests and replays, a preloaded
slice of DuckDB in the worker) and returns a ``Changes`` holding the new
version of every row it changed. It never mutates ``prior`` and does no I/O,
no clock, no randomness: time comes from the events.

Identities are scoped (F12): a campaign is (workspace_id, campaign_id), and
every row below it is keyed by its run's key plus its own id
(``projector.fold.rows``), so one tenant's ids never reach another's rows and a
delivery report changes only recipients of the run it names.

Why order does not matter (F2) and redelivery changes nothing (F1): every
row value is chosen by comparing ordering keys (max or min of
``(occurred_at, event_id)``, attempts, lattice flags), which is commutative,
associative and idempotent; every counter is the sum of per-row contributions,
kept exact by adding ``contribution(after) - contribution(before)`` at each
change, so a change that does not happen adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projector.fold.insight import insight_delta
from projector.fold.prior import Changes, Prior
from projector.fold.rows import (
    DLR_TERMINAL,
    AttemptRow,
    BatchRow,
    CampaignKey,
    CampaignRow,
    MessageKey,
    MessageRow,
    RecipientKey,
    RecipientRow,
    RunKey,
    RunRow,
    SnapshotRow,
)


def run_key(ev: Any) -> RunKey:
    """The key of the run an event names (F12: scoped by its campaign)."""
    return (ev.workspace_id, ev.campaign_id, ev.run_id)


def _after(a_at: datetime, a_id: str, b_at: datetime | None, b_id: str | None) -> bool:
    """True when event a orders after event b (b absent counts as before)."""
    if b_at is None:
        return True
    return (a_at, a_id) > (b_at, b_id or "")


def _before(a_at: datetime, a_id: str, b_at: datetime | None, b_id: str | None) -> bool:
    """True when event a orders before event b (b absent counts as after)."""
    if b_at is None:
        return True
    return (a_at, a_id) < (b_at, b_id or "")


def _run_counts(r: RecipientRow) -> tuple[int, int, int, int, int]:
    """A recipient's contribution to (sent, failed, skipped, delivered, failed_delivery)."""
    o = r.outcome
    if o == "sent":
        d = r.delivery_status
        if d in DLR_TERMINAL:
            return (1, 0, 0, 1, 0) if d == "delivered" else (1, 0, 0, 0, 1)
        return (1, 0, 0, 0, 0)
    if o == "failed":
        return (0, 1, 0, 0, 0)
    if o == "skipped":
        return (0, 0, 1, 0, 0)
    return (0, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class _Before:
    """What ``recount`` needs of a recipient before a change."""

    counts: tuple[int, int, int, int, int]
    submit_batch_id: str | None
    sent_at: datetime | None

    @staticmethod
    def of(r: RecipientRow) -> _Before:
        return _Before(_run_counts(r), r.submit_batch_id, r.sent_at)


def _dlr_rank(status: str) -> int:
    return 1 if status in DLR_TERMINAL else 0


class _Fold:
    """Working set of one fold call: copy-on-write over ``prior``."""

    def __init__(self, prior: Prior) -> None:
        self.prior = prior
        self.out = Changes()
        self._by_message: dict[MessageKey, set[RecipientKey]] = {}

    # -- row access (copy on first write) ---------------------------------

    def campaign(self, ev: Any) -> CampaignRow:
        key = (ev.workspace_id, ev.campaign_id)
        row = self.out.campaigns.get(key)
        if row is None:
            prior = self.prior.campaign(key)
            if prior is None:
                row = CampaignRow(key[0], key[1], updated_at=ev.occurred_at)
                self.out.campaigns[key] = row
                return row
            if ev.occurred_at <= (prior.updated_at or ev.occurred_at):
                return prior  # nothing to change: avoid a copy and a write
            row = prior.clone()
            self.out.campaigns[key] = row
        if row.updated_at is None or ev.occurred_at > row.updated_at:
            row.updated_at = ev.occurred_at
        return row

    def campaign_mut(self, key: CampaignKey) -> CampaignRow:
        row = self.out.campaigns.get(key)
        if row is None:
            prior = self.prior.campaign(key)
            assert prior is not None
            row = prior.clone()
            self.out.campaigns[key] = row
        return row

    def run(self, ev: Any) -> RunRow:
        """The event's run, created if unknown (F3), with updated_at folded in (F8)."""
        row = self.run_by_key(run_key(ev))
        if row.updated_at is None or ev.occurred_at > row.updated_at:
            row.updated_at = ev.occurred_at
        return row

    def run_by_key(self, key: RunKey) -> RunRow:
        row = self.out.runs.get(key)
        if row is None:
            prior = self.prior.run(key)
            row = RunRow(*key) if prior is None else prior.clone()
            self.out.runs[key] = row
        return row

    def batch(self, run: RunRow, batch_id: str) -> BatchRow:
        key = (run.workspace_id, run.campaign_id, run.run_id, batch_id)
        row = self.out.batches.get(key)
        if row is None:
            prior = self.prior.batch(key)
            row = BatchRow(*key) if prior is None else prior.clone()
            self.out.batches[key] = row
        return row

    def recipient_peek(self, key: RecipientKey) -> RecipientRow | None:
        row = self.out.recipients.get(key)
        return row if row is not None else self.prior.recipient(key)

    def recipient_mut(self, run: RunRow, recipient_id: str) -> RecipientRow:
        key = (run.workspace_id, run.campaign_id, run.run_id, recipient_id)
        row = self.out.recipients.get(key)
        if row is None:
            prior = self.prior.recipient(key)
            if prior is None:
                row = RecipientRow(*key)
                run.known_recipients += 1
            else:
                row = prior.clone()
            self.out.recipients[key] = row
        return row

    def message(self, key: MessageKey) -> MessageRow | None:
        row = self.out.messages.get(key)
        return row if row is not None else self.prior.message(key)

    def holders(self, key: MessageKey) -> set[RecipientKey]:
        """Recipients of the message's run whose winning submit currently names it."""
        keys = self._by_message.get(key)
        if keys is None:
            keys = set(self.prior.recipients_with_message(key))
            self._by_message[key] = keys
        return keys

    # -- counters ------------------------------------------------------------

    def recount(self, run: RunRow, before: _Before | None, after: RecipientRow) -> None:
        """Add after - before of one recipient to its run's and batches' counters."""
        old = before.counts if before is not None else (0, 0, 0, 0, 0)
        new = _run_counts(after)
        if old != new:
            run.sent += new[0] - old[0]
            run.failed += new[1] - old[1]
            run.skipped += new[2] - old[2]
            run.delivered += new[3] - old[3]
            run.failed_delivery += new[4] - old[4]
        old_batch = before.submit_batch_id if before is not None else None
        if old_batch is not None and (old_batch != after.submit_batch_id or old[:2] != new[:2]):
            b = self.batch(run, old_batch)
            b.sent_count -= old[0]
            b.failed_count -= old[1]
        if after.submit_batch_id is not None and (
            old_batch != after.submit_batch_id or old[:2] != new[:2]
        ):
            b = self.batch(run, after.submit_batch_id)
            b.sent_count += new[0]
            b.failed_count += new[1]
        # first/last sent_at: growth folds in; a vanished extreme needs a recompute.
        old_sent = before.sent_at if before is not None else None
        new_sent = after.sent_at
        if new_sent is not None:
            if run.first_sent_at is None or new_sent < run.first_sent_at:
                run.first_sent_at = new_sent
            if run.last_sent_at is None or new_sent > run.last_sent_at:
                run.last_sent_at = new_sent
        if (
            old_sent is not None
            and old_sent != new_sent
            and (old_sent == run.first_sent_at or old_sent == run.last_sent_at)
        ):
            self.out.sent_range_dirty.add(run.key)

    def rebatch(self, run: RunRow, before: tuple[bool, bool], b: BatchRow) -> None:
        """Batch contribution to run counters: (seen, completed)."""
        after = (b.seen, b.terminal_status == "completed")
        run.batches_seen += int(after[0]) - int(before[0])
        run.batches_completed += int(after[1]) - int(before[1])

    # -- handlers --------------------------------------------------------------

    def apply(self, ev: Any) -> None:
        self.out.events += 1
        self.out.touched_campaigns.add((ev.workspace_id, ev.campaign_id))
        self.campaign(ev)
        handler = _HANDLERS.get(ev.type)
        if handler is not None:  # unknown events leave state unchanged
            handler(self, ev)

    def on_campaign_defined(self, ev: Any) -> None:
        key = (ev.workspace_id, ev.campaign_id)
        row = self.out.campaigns.get(key) or self.prior.campaign(key)
        assert row is not None
        if _after(ev.occurred_at, ev.event_id, row.defined_at, row.defined_event_id):
            row = self.campaign_mut(key)
            row.name = ev.name
            row.channel = ev.channel
            row.channel_name = ev.channel_name
            row.provider = ev.provider
            row.campaign_type = ev.campaign_type
            row.defined_at = ev.occurred_at
            row.defined_event_id = ev.event_id

    def on_run_scheduled(self, ev: Any) -> None:
        run = self.run(ev)
        if _after(ev.occurred_at, ev.event_id, run.scheduled_event_at, run.scheduled_event_id):
            run.scheduled_at = ev.scheduled_at
            run.recipient_count = ev.recipient_count
            run.batch_size = ev.batch_size
            run.declared_total_batches = ev.total_batches
            run.max_attempts = ev.max_attempts
            run.scheduled_event_at = ev.occurred_at
            run.scheduled_event_id = ev.event_id

    def on_run_claimed(self, ev: Any) -> None:
        run = self.run(ev)
        if _before(ev.occurred_at, ev.event_id, run.claimed_at, run.claimed_event_id):
            run.claimed_at = ev.occurred_at
            run.claimed_event_id = ev.event_id

    def on_run_terminal(self, ev: Any) -> None:
        run = self.run(ev)
        if _before(ev.occurred_at, ev.event_id, run.terminal_at, run.terminal_event_id):
            run.terminal_status = ev.type.removeprefix("run.")
            run.terminal_at = ev.occurred_at
            run.terminal_event_id = ev.event_id
            error = getattr(ev, "error", None)
            run.error_code = error.code if error is not None else None
            run.error_message = error.message if error is not None else None

    def on_snapshot(self, ev: Any) -> None:
        run = self.run(ev)
        run.has_snapshot = True
        key = run.key
        current = self.out.snapshots.get(key) or self.prior.snapshot(key)
        if current is None or _after(
            ev.occurred_at, ev.event_id, current.event_at, current.event_id
        ):
            self.out.snapshots[key] = SnapshotRow(
                *key,
                event_at=ev.occurred_at,
                event_id=ev.event_id,
                frozen_at=ev.frozen_at,
                channel=ev.channel,
                provider=ev.provider,
                sender_id=ev.sender_id,
                template=ev.template,
                personalized=ev.personalized,
                body=ev.body,
                total_cost=float(ev.cost.total_cost),
                currency_units=ev.cost.currency_units,
                recipient_count=ev.recipient_count,
                recipients=list(ev.recipients) if ev.recipients is not None else None,
            )

    def _batch_event(self, ev: Any) -> tuple[RunRow, BatchRow, tuple[bool, bool]]:
        run = self.run(ev)
        b = self.batch(run, ev.batch_id)
        before = (b.seen, b.terminal_status == "completed")
        b.seen = True
        return run, b, before

    def on_batch_created(self, ev: Any) -> None:
        run, b, before = self._batch_event(ev)
        if _after(ev.occurred_at, ev.event_id, b.created_at, b.created_event_id):
            b.batch_sequence = ev.batch_sequence
            b.recipient_count = len(ev.recipients)
            b.created_at = ev.occurred_at
            b.created_event_id = ev.event_id
        self.rebatch(run, before, b)
        seq = ev.batch_sequence
        ws, cid, rid = run.key
        for member in ev.recipients:
            current = self.recipient_peek((ws, cid, rid, member.recipient_id))
            # Membership: the smallest (batch_sequence, batch_id) naming the
            # recipient gives its list position and phone number.
            if (
                current is None
                or current.batch_sequence is None
                or (seq, ev.batch_id) < (current.batch_sequence, current.created_batch_id or "")
            ):
                r = self.recipient_mut(run, member.recipient_id)
                r.batch_sequence = seq
                r.created_batch_id = ev.batch_id
                r.phone_number = member.phone_number

    def on_batch_started(self, ev: Any) -> None:
        run, b, before = self._batch_event(ev)
        if _before(ev.occurred_at, ev.event_id, b.started_at, b.started_event_id):
            b.started_at = ev.occurred_at
            b.started_event_id = ev.event_id
        self.rebatch(run, before, b)

    def on_batch_terminal(self, ev: Any) -> None:
        run, b, before = self._batch_event(ev)
        if _before(ev.occurred_at, ev.event_id, b.terminal_at, b.terminal_event_id):
            b.terminal_status = ev.type.removeprefix("batch.")
            b.terminal_at = ev.occurred_at
            b.terminal_event_id = ev.event_id
            b.error_detail = getattr(ev, "error_detail", None)
        self.rebatch(run, before, b)

    def record_attempt(self, run: RunRow, ev: Any) -> None:
        """Every attempt is kept (paged recipient views list them all)."""
        key = (run.workspace_id, run.campaign_id, run.run_id, ev.recipient_id, ev.attempt)
        current = self.out.attempts.get(key) or self.prior.attempt(key)
        if current is None or _after(
            ev.occurred_at, ev.event_id, current.submitted_at, current.event_id
        ):
            self.out.attempts[key] = AttemptRow(
                *key,
                submitted_at=ev.occurred_at,
                event_id=ev.event_id,
                outcome=ev.outcome,
                message_id=ev.message_id,
                batch_id=ev.batch_id,
                reason=ev.reason,
            )

    def on_submitted(self, ev: Any) -> None:
        run = self.run(ev)
        self.record_attempt(run, ev)
        ws, cid, rid = run.key
        key = (ws, cid, rid, ev.recipient_id)
        current = self.recipient_peek(key)
        if current is not None and current.attempt is not None:
            if (ev.attempt, ev.occurred_at, ev.event_id) <= (
                current.attempt,
                current.submitted_at,
                current.submit_event_id,
            ):
                return  # F4: an older or equal submit loses; a duplicate changes nothing
        before = _Before.of(current) if current is not None else None
        r = self.recipient_mut(run, ev.recipient_id)
        old_message = r.message_id
        r.attempt = ev.attempt
        r.submitted_at = ev.occurred_at
        r.submit_event_id = ev.event_id
        r.outcome = ev.outcome
        r.message_id = ev.message_id
        r.submit_batch_id = ev.batch_id
        r.submit_phone = ev.phone_number
        r.reason = ev.reason
        if old_message != r.message_id:
            if old_message is not None:
                self.holders((ws, cid, rid, old_message)).discard(key)
            if r.message_id is not None:
                self.holders((ws, cid, rid, r.message_id)).add(key)
        msg = self.message((ws, cid, rid, r.message_id)) if r.message_id is not None else None
        _copy_report(r, msg)
        self.recount(run, before, r)

    def on_dlr(self, ev: Any) -> None:
        run = self.run(ev)  # F8: a report touches its run's updated_at
        key = (run.workspace_id, run.campaign_id, run.run_id, ev.message_id)
        current = self.message(key)
        if current is not None and (_dlr_rank(ev.status), ev.occurred_at, ev.event_id) <= (
            _dlr_rank(current.status),
            current.reported_at,
            current.event_id,
        ):
            return  # F5: terminal beats non-terminal, then later, then larger id
        msg = MessageRow(
            *key,
            status=ev.status,
            reported_at=ev.occurred_at,
            event_id=ev.event_id,
            error_code=ev.error_code,
        )
        self.out.messages[key] = msg
        # F12: only recipients of the run the report names hold its message.
        for rkey in list(self.holders(key)):
            held = self.recipient_peek(rkey)
            if held is None or held.message_id != ev.message_id:
                continue
            if (held.delivery_status, held.delivery_reported_at, held.delivery_error_code) == (
                msg.status, msg.reported_at, msg.error_code
            ):
                continue
            before = _Before.of(held)
            r = self.recipient_mut(run, rkey[3])
            _copy_report(r, msg)
            self.recount(run, before, r)


def _copy_report(r: RecipientRow, msg: MessageRow | None) -> None:
    """The winning report of the recipient's winning message, into its row (F5)."""
    r.delivery_status = msg.status if msg is not None else None
    r.delivery_reported_at = msg.reported_at if msg is not None else None
    r.delivery_error_code = msg.error_code if msg is not None else None


_HANDLERS = {
    "campaign.defined": _Fold.on_campaign_defined,
    "run.scheduled": _Fold.on_run_scheduled,
    "run.claimed": _Fold.on_run_claimed,
    "run.snapshot_frozen": _Fold.on_snapshot,
    "run.completed": _Fold.on_run_terminal,
    "run.failed": _Fold.on_run_terminal,
    "run.cancelled": _Fold.on_run_terminal,
    "batch.created": _Fold.on_batch_created,
    "batch.started": _Fold.on_batch_started,
    "batch.completed": _Fold.on_batch_terminal,
    "batch.failed": _Fold.on_batch_terminal,
    "message.submitted": _Fold.on_submitted,
    "message.dlr": _Fold.on_dlr,
}


def fold(prior: Prior, events: Iterable[Any]) -> Changes:
    """Fold ``events`` onto ``prior`` and return the rows that changed."""
    work = _Fold(prior)
    for ev in events:
        work.apply(ev)
    out = work.out
    # Rows are copied when touched; keep only those that really changed, so a
    # redelivered batch writes nothing (F1) and flushes stay small.
    _drop_unchanged(out.campaigns, prior.campaign)
    _drop_unchanged(out.runs, prior.run)
    for key in [k for k, row in out.batches.items() if row.empty]:
        del out.batches[key]
        if prior.batch(key) is not None:
            out.deleted_batches.add(key)
    _drop_unchanged(out.batches, prior.batch)
    _drop_unchanged(out.recipients, prior.recipient)
    out.insight = insight_delta(prior, out.recipients, out.attempts)
    return out


def _drop_unchanged(rows: dict[Any, Any], lookup: Any) -> None:
    for key in [k for k, row in rows.items() if row == lookup(k)]:
        del rows[key]
