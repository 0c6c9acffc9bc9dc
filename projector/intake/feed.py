"""Flush notifications from the writer to API subscribers in other threads.

The writer publishes which campaigns a committed flush changed; each
subscriber (one per open server-sent-events stream) holds only the latest
flush sequence it was told about, never a queue, so a slow or stalled client
costs constant memory however many flushes happen.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

from projector.fold.rows import CampaignKey
from projector.store.writer import FlushResult


class Subscription:
    """Wakes one asyncio task when its campaign changes (coalescing)."""

    def __init__(
        self, feed: ChangeFeed, campaign: CampaignKey, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.feed = feed
        self.campaign = campaign
        self.loop = loop
        self.latest_seq = 0
        self._event = asyncio.Event()

    def _notify(self, seq: int) -> None:
        # Runs in the writer thread: hand over to the subscriber's loop.
        self.loop.call_soon_threadsafe(self._set, seq)

    def _set(self, seq: int) -> None:
        self.latest_seq = max(self.latest_seq, seq)
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True when a change arrived within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def close(self) -> None:
        self.feed._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChangeFeed:
    def __init__(self) -> None:
        self._subs: dict[CampaignKey, set[Subscription]] = defaultdict(set)
        self._lock = threading.Lock()

    def subscribe(self, campaign: CampaignKey) -> Subscription:
        sub = Subscription(self, campaign, asyncio.get_running_loop())
        with self._lock:
            self._subs[campaign].add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.campaign)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.campaign]

    def subscribers(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subs.values())

    def publish(self, result: FlushResult) -> None:
        """Pipeline flush listener: called after each committed flush."""
        with self._lock:
            targets = [sub for key in result.changed_campaigns for sub in self._subs.get(key, ())]
        for sub in targets:
            try:
                sub._notify(result.seq)
            except RuntimeError:  # the subscriber's loop is closed: drop it
                self._remove(sub)
