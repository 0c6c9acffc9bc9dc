"""Payloads of polled endpoints, remembered per campaign position.

A campaign's position (``campaign_positions``) moves in the same transaction
as any row of the campaign, so a payload computed from data read after the
position was read is valid for as long as the position stays the same. This
keeps a status poll at one small query while nothing changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class PositionCache:
    def __init__(self, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._entries: OrderedDict[Hashable, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_build(self, key: Hashable, position: int, build: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == position:
                self._entries.move_to_end(key)
                return hit[1]
        value = build()  # outside the lock: concurrent misses build twice, harmlessly
        with self._lock:
            current = self._entries.get(key)
            # Never replace an entry of a later position with an older one.
            if current is None or current[0] <= position:
                self._entries[key] = (position, value)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)
        return value

    def peek(self, key: Hashable, position: int) -> Any | None:
        """The payload remembered for ``key`` at exactly ``position``, or None (builds nothing)."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] != position:
                return None
            self._entries.move_to_end(key)
            return hit[1]

    def __len__(self) -> int:
        return len(self._entries)
