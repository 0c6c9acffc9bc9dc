"""Blue/green: switch a running ``projector serve`` to a rebuilt database.

Procedure (see docs/operations.md): build NEW with ``projector replay``, then
``projector swap --db NEW``. The server catches NEW up from NEW's stored
offsets to the live position in two passes: first while ingestion goes on,
then, holding the flush lock (ingestion pauses; reads do not), the few records
that arrived meanwhile. It then points the writer and the API at NEW. Requests
in flight finish on the old database, which is closed after a grace period.
A failure at any step leaves the old database serving and NEW closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from projector.errors import ProjectorError
from projector.rebuild.errors import SwapError, SwapNotReady
from projector.settings import Settings
from projector.store.retired import retired_marker
from projector.store.writer import Store, live_store

log = logging.getLogger(__name__)

GRACE_SECONDS = 10.0
SWAP_TIMEOUT = 3600.0


class SwapController:
    """The ``admin`` operations of ``projector serve``; called from API threads.

    ``on_swapped(new)`` is called once NEW is the writer's store, still under
    the flush lock: the composition root points the API's reads at it there.
    Every refusal or failure raises ``SwapError``; the API answers it with 409.
    """

    def __init__(self, projector: Any, on_swapped: Callable[[Store], None]) -> None:
        self.projector = projector
        self.on_swapped = on_swapped
        self._busy = threading.Lock()

    def swap(self, db: str) -> dict[str, Any]:
        if not self._busy.acquire(blocking=False):
            raise SwapError("Another swap is running.")
        try:
            loop = self.projector.loop
            if loop is None:
                raise SwapNotReady("The projector is still starting; retry in a few seconds.")
            future = asyncio.run_coroutine_threadsafe(self._swap(Path(db)), loop)
            return future.result(timeout=SWAP_TIMEOUT)
        finally:
            self._busy.release()

    async def _swap(self, path: Path) -> dict[str, Any]:
        from projector.rebuild.replay import Batcher, replay_kafka

        p = self.projector
        pipeline = p.pipeline
        settings: Settings = p.settings
        if not path.is_file():
            raise SwapError(f"{path} does not exist (give the path as the server sees it)")
        if path.resolve() == Path(pipeline.store.path).resolve():
            raise SwapError(f"{path} is already the live database")
        t0 = time.monotonic()
        try:
            new = await asyncio.to_thread(
                lambda: live_store(settings, path).open()
            )
        except ProjectorError as e:
            raise SwapError(f"cannot open {path}: {e}") from e
        start_offsets = dict(new.offsets())
        # Partitions flagged inconsistent: the live position belongs to a log
        # that is gone, so NEW (rebuilt from the log as it is now) is caught
        # up to the log end there and its position taken as it is; the flags
        # are then cleared and the marks checked again, against NEW.
        flagged = set(pipeline.inconsistent)
        try:
            caught = await self._catch_up(new, Batcher, replay_kafka, await self._target(flagged))
            async with pipeline._flush_lock:
                # Ingestion now waits for us; nothing commits to the old file.
                target = await self._target(flagged)
                caught += await self._catch_up(new, Batcher, replay_kafka, target)
                old = pipeline.store
                stored = new.offsets()
                pipeline.adopt(stored, new.marks(), {tp: target[tp] for tp in flagged})
                await pipeline.reposition(flagged)
                pipeline.store = new
                self.on_swapped(new)
                p.status.update(offsets=dict(pipeline.applied), flush_seq=new.seq)
        except BaseException:
            await asyncio.to_thread(new.close)
            raise
        if flagged:
            from projector.intake.offsets import OffsetsError

            # NEW must itself hold records of the log as it is now. The swap
            # stands either way: adopt() left these marks unconfirmed, so the
            # next commit of each partition reads its mark back too.
            try:
                await pipeline.check_marks(flagged)
            except OffsetsError as e:
                log.warning("marks of the swapped-in partitions not checked yet: %s", e)
        # Let requests that started on the old database finish, then close it.
        asyncio.get_running_loop().call_later(
            GRACE_SECONDS, lambda: threading.Thread(target=old.close, daemon=True).start()
        )
        retired_marker(path).unlink(missing_ok=True)  # live again, if it was retired once
        try:
            retired_marker(old.path).write_text(
                json.dumps(
                    {
                        "replaced_by": str(path),
                        "at": datetime.now(UTC).isoformat(timespec="seconds"),
                    }
                )
            )
        except OSError as e:  # the swap itself stands; only the guard is missing
            log.error("could not write %s: %s", retired_marker(old.path), e)
        took = time.monotonic() - t0
        log.warning(
            "swapped to %s in %.2fs (%d events caught up); %s retires in %.0fs",
            path,
            took,
            caught,
            old.path,
            GRACE_SECONDS,
        )
        return {
            "db": str(path),
            "previous_db": str(old.path),
            "caught_up_events": caught,
            "start_offsets": _offsets_json(start_offsets),
            "offsets": _offsets_json(stored),
            "cleared_inconsistent": sorted(
                f"{t}:{p}" for t, p in flagged - set(pipeline.inconsistent)
            ),
            "seconds": round(took, 3),
        }

    async def _target(self, flagged: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Where NEW must be caught up to: the live position, or the log end where flagged."""
        from projector.intake.offsets import OffsetsError, log_end_offsets

        pipeline = self.projector.pipeline
        target = {tp: o for tp, o in pipeline.applied.items() if tp not in flagged}
        if flagged:
            try:
                ends = await log_end_offsets(
                    self.projector.settings.bootstrap, sorted({t for t, _ in flagged})
                )
            except OffsetsError as e:
                raise SwapError(
                    f"cannot read the log ends of the inconsistent partitions: {e}"
                ) from e
            target.update({tp: ends.get(tp, 0) for tp in flagged})
        return target

    async def _catch_up(self, new: Store, batcher_cls: Any, replay_kafka: Any, target: dict) -> int:
        start = new.offsets()
        if all(start.get(tp, 0) >= end for tp, end in target.items()):
            return 0
        batcher = batcher_cls(new)
        try:
            await replay_kafka(batcher, self.projector.settings.bootstrap, start, target)
            await asyncio.to_thread(batcher.drain)
        except Exception as e:
            raise SwapError(f"catching up {new.path} failed: {e}") from e
        finally:
            batcher.close()
        return batcher.stats.events


def _offsets_json(offsets: dict[tuple[str, int], int]) -> dict[str, int]:
    return {f"{t}:{p}": o for (t, p), o in sorted(offsets.items())}


STARTING_WAIT = 120.0  # how long ``request_swap`` waits for a server still starting


def request_swap(
    url: str,
    db: Path | str,
    admin_key: str,
    *,
    wait: float = STARTING_WAIT,
    on_wait: Callable[[str], None] | None = None,
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    """Ask the ``projector serve`` at ``url`` to switch to ``db``; wait for the answer.

    A server still starting answers 503 with ``Retry-After`` (nothing changed):
    the request is sent again after that delay, for up to ``wait`` seconds.

    Args:
        url: the server's base URL.
        db: the rebuilt database, resolved to an absolute path here (the
            server opens it, so it must be the same file from both sides).
        admin_key: a key holding the ``admin`` scope on that server.
        wait: seconds to keep retrying a server that is still starting.
        on_wait: told the server's message each time the request waits.
        client: the HTTP client to send with (a new one by default).

    Returns:
        The server's ``data``: ``db``, ``previous_db``, ``caught_up_events``,
        ``seconds``, ``cleared_inconsistent`` and the offsets.

    Raises:
        SwapError: the server could not be reached, or refused or failed the
            swap, or was still starting after ``wait`` seconds.
    """
    http = client or httpx.Client(timeout=SWAP_TIMEOUT)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                r = http.post(
                    f"{url.rstrip('/')}/admin/swap",
                    json={"db": str(Path(db).resolve())},
                    headers={"X-API-Key": admin_key},
                )
            except httpx.HTTPError as e:
                raise SwapError(f"cannot reach {url}: {e}") from e
            json_body = r.headers.get("content-type", "").startswith("application/json")
            body = r.json() if json_body else {}
            if r.status_code == 200:
                data: dict[str, Any] = body["data"]
                return data
            errors = body.get("errors") or [{"code": str(r.status_code), "message": r.text[:200]}]
            message = f"({r.status_code} {errors[0]['code']}): {errors[0]['message']}"
            delay = _retry_after(r)
            if delay is None or time.monotonic() + delay > deadline:
                raise SwapError(f"refused {message}")
            if on_wait is not None:
                on_wait(message)
            time.sleep(delay)  # the server's own Retry-After: it says when to ask again
    finally:
        if client is None:
            http.close()


def _retry_after(r: httpx.Response) -> float | None:
    """Seconds to wait before asking again: only a 503 that names them."""
    if r.status_code != 503:
        return None
    try:
        return max(0.0, float(r.headers.get("Retry-After", "")))
    except ValueError:
        return None
