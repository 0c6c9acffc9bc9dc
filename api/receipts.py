"""Receipts that never come: sent recipients still without a terminal delivery report
longer than the receipt window after their send (``receipt_overdue``).

The window is measured on the campaign's own event-time clock, the latest
``occurred_at`` applied to any of its runs (F8's ``updated_at``, the greatest
over the runs), never the server's wall clock: the count then stays a function
of the events (F1, F2), can be cached per campaign position, and a replay
gives the same answer (docs/decisions/0036-receipt-window-on-event-time.md).

Polls stay cheap: the run rows alone tell that nothing can be overdue (nothing
pending, or the run's first send is within the window), which holds while a
campaign is live. Only a run with pending receipts and a first send older than
the window costs one count over the campaign's recipients.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from api.readstore import ReadStore
from projector.fold.rows import CampaignKey, RunRow

RECEIPT_WINDOW = timedelta(hours=72)


def receipt_clock(runs: Iterable[RunRow]) -> datetime | None:
    """The campaign's event-time clock: the latest event time applied to its runs."""
    times = [r.updated_at for r in runs if r.updated_at is not None]
    return max(times) if times else None


def overdue_cutoff(runs: Iterable[RunRow], window: timedelta) -> datetime | None:
    """Sends before this are overdue while their receipt is missing; None: no clock yet."""
    clock = receipt_clock(runs)
    return None if clock is None else clock - window


def overdue_from_runs(runs: list[RunRow], window: timedelta) -> dict[str, int] | None:
    """``receipt_overdue`` per run when the run rows alone tell (then every count is 0),
    else None: some run has pending receipts sent before the cutoff."""
    cutoff = overdue_cutoff(runs, window)
    out: dict[str, int] = {}
    for run in runs:
        pending = run.sent - run.delivered - run.failed_delivery
        if pending > 0 and cutoff is not None and run.first_sent_at is not None \
                and run.first_sent_at < cutoff:  # fmt: skip
            return None
        out[run.run_id] = 0
    return out


def overdue_of(
    reader: ReadStore, campaign: CampaignKey, runs: list[RunRow], window: timedelta
) -> dict[str, int]:
    """``receipt_overdue`` per run of the campaign; ``runs`` and the count must come from
    the same committed state (inside ``reader.consistent()``)."""
    known = overdue_from_runs(runs, window)
    if known is not None:
        return known
    cutoff = overdue_cutoff(runs, window)
    assert cutoff is not None  # noqa: S101 - overdue_from_runs returns None only with a clock
    counted = reader.receipt_overdue(campaign, cutoff)
    return {run.run_id: counted.get(run.run_id, 0) for run in runs}
