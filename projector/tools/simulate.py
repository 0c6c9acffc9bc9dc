"""A deterministic simulator of the dispatch engine's event stream.

It plays what the reference engine does after a launch: a run is scheduled,
a worker claims it within 30 s and freezes a snapshot, recipients are split
into batches of up to 1000 and submitted one by one (failed submits retried up
to ``max_attempts``), carrier delivery reports (DLRs) trickle in seconds to
minutes later, and the run ends ``completed`` or, now and then, ``failed`` or
``cancelled`` part-way through.

Everything is a function of the seed: event ids come from the seeded random
generator, and simulated time starts on 2026-05-12 at an offset drawn from the
seed, never from the wall clock. Each campaign draws from its own generator,
so the stream is identical however the per-campaign timelines are merged.

``generate`` is lazy: each campaign keeps only its own not-yet-due events
(mostly DLRs still in flight) and the campaigns are merged by ``occurred_at``.

Live mode (``projector demo``) plays that same stream on the wall clock:
``LiveClock`` releases each event when its simulated time comes, cutting quiet
stretches short, and stamps it with the wall clock as it is sent, so nothing
a live demo shows lies in the future. Only the stamps depend on the clock;
which events come, and in which order, is still the seed's.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import sys
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from datetime import UTC, datetime
from functools import lru_cache
from random import Random
from typing import IO, Any

import orjson

from projector.settings import Settings

BATCH_SIZE = 1000
WORKSPACES = ("ws_alpha", "ws_beta", "ws_gamma")
PROVIDERS = ("mock", "carrier-x", "africastalking")
SENDER_IDS = ("BRIQ", "INFO", "SHOP")
CAMPAIGN_NAMES = (
    "Welcome series",
    "May promo",
    "Payment reminder",
    "Service update",
    "Loyalty points",
    "Weekend flash sale",
)
BODIES = (
    "Hello, thanks for joining.",
    "Your invoice is due tomorrow. Reply STOP to opt out.",
    "Flash sale: 20% off this weekend only!",
    "Our service will be briefly unavailable tonight from 01:00 to 02:00.",
)
# A snapshot lists its recipients' numbers only for small runs: the list is
# PII and a million of them would make a record of several megabytes.
SNAPSHOT_RECIPIENTS_MAX = 1000

# Shares of the first submit attempt; a failed attempt is retried while
# attempts remain, and a retry succeeds with RETRY_SUCCESS.
SKIP_SHARE = 0.03
FAIL_SHARE = 0.045
RETRY_SUCCESS = 0.6
# Why the engine skips a recipient, and why a provider refuses a submit
# (reason, weight): the reason codes an SMS gateway reports.
SKIP_REASONS = (("invalid_number", 4), ("opted_out", 3), ("blacklisted", 2), ("duplicate", 1))
FAIL_REASONS = (
    ("rate_limited", 4),
    ("provider_error", 3),
    ("timeout", 2),
    ("insufficient_credit", 1),
)
# Receipts that never come: no report at all, or an early ``accepted`` that no
# final report follows (the carrier lost it).
NO_DLR_SHARE = 0.02
STUCK_SHARE = 0.01
EARLY_REPORT_SHARE = 0.35
FINAL_STATUSES = ("delivered", "undelivered", "expired", "rejected", "failed")
FINAL_WEIGHTS = (0.90, 0.04, 0.025, 0.02, 0.015)
_FINAL_EDGES = tuple(itertools.accumulate(FINAL_WEIGHTS))
# Carrier error codes of failed reports (code, weight), as SMPP receipts carry
# them in ``err:``: GSM MAP errors, e.g. 001 unknown subscriber, 006 absent
# subscriber for SM, 013 call barred, 027 absent subscriber, 031 busy for MT
# SMS, 032 SM delivery failure, 034 system failure. Expired reports carry none.
ERROR_CODES: dict[str, tuple[tuple[str, int], ...]] = {
    "undelivered": (("027", 4), ("006", 2), ("032", 2), ("031", 1)),
    "rejected": (("001", 3), ("013", 2)),
    "failed": (("034", 3), ("032", 1)),
}
# Time from submit to the final report: mostly seconds, some minutes, rarely
# hours (a lognormal mixture: median, sigma, share), capped at DELAY_MAX_MS.
# Expired reports come when the validity period runs out.
DELAYS = ((3_000, 0.8, 0.90), (90_000, 0.9, 0.09), (30 * 60_000, 0.8, 0.01))
_DELAY_EDGES = tuple(itertools.accumulate(share for _m, _s, share in DELAYS))
DELAY_MAX_MS = 12 * 3_600_000
EXPIRY_MS = (10 * 60_000, 30 * 60_000)
BATCH_FAIL_SHARE = 0.03
RUN_CANCEL_SHARE = 0.07
RUN_FAIL_SHARE = 0.05
RENAME_SHARE = 0.3

_DAY0 = datetime(2026, 5, 12, tzinfo=UTC)
_DAY0_MS = int(_DAY0.timestamp() * 1000)


@lru_cache(maxsize=4096)
def _second_prefix(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def format_ms(ms: int) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``, e.g. ``2026-05-12T13:37:06.000Z``."""
    second, milli = divmod(ms, 1000)
    return f"{_second_prefix(second)}.{milli:03d}Z"


def _uuid(rng: Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# (occurred_at ms, campaign index, sequence within campaign, event): unique
# on the first three fields, so the event dicts are never compared.
_Item = tuple[int, int, int, dict[str, Any]]


class _Campaign:
    """One campaign's timeline: its runs, played one after another."""

    def __init__(self, index: int, seed: int, start_ms: int, recipients: int) -> None:
        self.index = index
        self.rng = Random(seed)
        self.start_ms = start_ms
        self.recipients = recipients
        self.campaign_id = _uuid(self.rng)
        self.workspace_id = self.rng.choice(WORKSPACES)
        self.provider = self.rng.choice(PROVIDERS)
        self.name = f"{self.rng.choice(CAMPAIGN_NAMES)} #{index + 1}"
        self._pending: list[tuple[int, int, dict[str, Any]]] = []
        self._seq = itertools.count()

    # -- the pending heap ------------------------------------------------
    # Events are pushed when they are decided, which for retries and DLRs is
    # ahead of the simulated clock. The clock only moves forward and nothing
    # is ever pushed behind it, so everything up to the clock can be released
    # in order.

    def _push(self, ms: int, type_: str, **fields: Any) -> None:
        event = {
            "event_id": _uuid(self.rng),
            "type": type_,
            "occurred_at": format_ms(ms),
            "workspace_id": self.workspace_id,
            "campaign_id": self.campaign_id,
            **fields,
        }
        heapq.heappush(self._pending, (ms, next(self._seq), event))

    def _release(self, clock: int) -> Iterator[_Item]:
        pending, index = self._pending, self.index
        while pending and pending[0][0] <= clock:
            ms, seq, event = heapq.heappop(pending)
            yield ms, index, seq, event

    # -- the timeline ----------------------------------------------------

    def events(self) -> Generator[_Item, None, None]:
        rng = self.rng
        t = self.start_ms
        self._define(t, self.name)
        runs = rng.randint(1, 3)
        t += rng.randint(30_000, 30 * 60_000)
        for r in range(runs):
            if r and rng.random() < RENAME_SHARE:
                self.name = f"{self.name} (renamed)"
                self._define(t, self.name)
                t += rng.randint(1_000, 60_000)
            t = yield from self._run(r, t)
            t += rng.randint(5 * 60_000, 90 * 60_000)
        yield from self._release(sys.maxsize)

    def _define(self, t: int, name: str) -> None:
        self._push(
            t,
            "campaign.defined",
            name=name,
            channel="SMS",
            channel_name="SMS",
            provider=self.provider,
            campaign_type="broadcast",
        )

    def _run(self, r: int, t: int) -> Generator[_Item, None, int]:
        rng = self.rng
        push = self._push
        m = self.recipients
        run_id = f"run_{self.index}_{r}_{rng.getrandbits(32):08x}"
        run = {"run_id": run_id}
        max_attempts = rng.randint(1, 3)
        total_batches = -(-m // BATCH_SIZE)
        scheduled_at = t if rng.random() < 0.6 else t + rng.randint(60_000, 30 * 60_000)
        push(
            t,
            "run.scheduled",
            **run,
            scheduled_at=format_ms(scheduled_at),
            recipient_count=m,
            batch_size=BATCH_SIZE,
            total_batches=total_batches,
            max_attempts=max_attempts,
        )
        yield from self._release(t)

        # Phone numbers are a bijection of the recipient index onto 2557XXXXXXXX
        # (a 4-round Feistel network on the two 4-digit halves): unique in the
        # run, computable per index so the snapshot and the batches agree, and
        # free of the visible stride of an affine map.
        keys = [rng.randrange(10_000) for _ in range(4)]

        def phone(i: int) -> str:
            left, right = divmod(i % 100_000_000, 10_000)
            for k in keys:
                left, right = right, (left + (right * right + k * right + k) % 10_000) % 10_000
            return f"2557{left:04d}{right:04d}"

        t = scheduled_at + rng.randint(1_000, 30_000)
        push(t, "run.claimed", **run)
        parts = rng.randint(1, 2)
        body = rng.choice(BODIES)
        snapshot: dict[str, Any] = {
            "frozen_at": format_ms(t),
            "channel": "SMS",
            "provider": self.provider,
            "sender_id": rng.choice(SENDER_IDS),
            "template": None if rng.random() < 0.7 else "tpl_" + body.split()[0].lower(),
            "personalized": False,
            "body": body,
            "cost": {"total_cost": m * parts, "currency_units": "sms_parts"},
            "recipient_count": m,
        }
        if m <= SNAPSHOT_RECIPIENTS_MAX:
            snapshot["recipients"] = [phone(i) for i in range(m)]
        push(t, "run.snapshot_frozen", **run, **snapshot)

        fate = rng.random()
        stop_at: int | None = None  # recipient index at which the run ends early
        if m and fate < RUN_CANCEL_SHARE + RUN_FAIL_SHARE:
            stop_at = rng.randrange(m)
        cancelled = fate < RUN_CANCEL_SHARE
        mean_gap = rng.uniform(1.0, 4.0)  # ms between submits: 250-1000/s
        last = t  # latest event time of the run proper (not its DLRs)

        for b, lo in enumerate(range(0, m, BATCH_SIZE)):
            hi = min(lo + BATCH_SIZE, m)
            if stop_at is not None and stop_at < lo:
                # The stop point fell in a batch that failed: the engine stops
                # before starting the next one.
                t = yield from self._stop_early(t, last, run, cancelled)
                return t
            batch = {"run_id": run_id, "batch_id": _uuid(rng)}
            t = max(t, last) + rng.randint(5, 200)
            recipients = [
                {"recipient_id": f"rcp_{run_id}_{i + 1}", "phone_number": phone(i)}
                for i in range(lo, hi)
            ]
            push(t, "batch.created", **batch, batch_sequence=b + 1, recipients=recipients)
            t += rng.randint(1, 50)
            push(t, "batch.started", **batch)
            last = t
            fail_at = rng.randrange(lo, hi) if rng.random() < BATCH_FAIL_SHARE else None
            for i in range(lo, hi):
                if i == stop_at:
                    t = yield from self._stop_early(t, last, run, cancelled)
                    return t
                if i == fail_at:
                    t += rng.randint(1, 200)
                    push(
                        t,
                        "batch.failed",
                        **batch,
                        error_detail={"code": "PROVIDER_DOWN", "message": "provider unavailable"},
                    )
                    last = max(last, t)
                    break
                t += int(rng.expovariate(1.0 / mean_gap))
                r = recipients[i - lo]
                sent_at = self._submit(t, batch, r["recipient_id"], r["phone_number"], max_attempts)
                last = max(last, sent_at)
            else:
                t = max(t, last) + rng.randint(1, 30)
                push(t, "batch.completed", **batch)
                last = t
            yield from self._release(t)

        if stop_at is not None:  # it fell in the last batch, which failed
            t = yield from self._stop_early(t, last, run, cancelled)
            return t
        t = max(t, last) + rng.randint(50, 2_000)
        push(t, "run.completed", **run)
        yield from self._release(t)
        return t

    def _stop_early(
        self, t: int, last: int, run: dict[str, str], cancelled: bool
    ) -> Generator[_Item, None, int]:
        t = max(t, last) + self.rng.randint(1, 500)
        if cancelled:
            self._push(t, "run.cancelled", **run)
        else:
            self._push(t, "run.failed", **run, error=_run_error(self.rng))
        yield from self._release(t)
        return t

    def _submit(
        self, t: int, batch: dict[str, str], recipient_id: str, phone: str, max_attempts: int
    ) -> int:
        """Submit one recipient, with retries; returns the time of its last attempt."""
        rng = self.rng
        common = {**batch, "recipient_id": recipient_id, "phone_number": phone}
        if rng.random() < SKIP_SHARE:
            reason = _pick(rng, SKIP_REASONS)
            self._push(
                t, "message.submitted", **common, outcome="skipped", attempt=1, reason=reason
            )
            return t
        attempt = 1
        failed = rng.random() < FAIL_SHARE
        while failed:
            reason = _pick(rng, FAIL_REASONS)
            self._push(
                t, "message.submitted", **common, outcome="failed", attempt=attempt, reason=reason
            )
            if attempt >= max_attempts:
                return t
            attempt += 1
            t += rng.randint(5, 400)
            failed = rng.random() >= RETRY_SUCCESS
        message_id = f"msg_{rng.getrandbits(64):016x}"
        self._push(
            t, "message.submitted", **common, outcome="sent", attempt=attempt, message_id=message_id
        )
        self._reports(t, batch["run_id"], message_id)
        return t

    def _reports(self, t: int, run_id: str, message_id: str) -> None:
        rng = self.rng
        fate = rng.random()
        if fate < NO_DLR_SHARE:
            return
        stuck = fate < NO_DLR_SHARE + STUCK_SHARE
        early = t
        if stuck or rng.random() < EARLY_REPORT_SHARE:
            early = t + rng.randint(200, 3_000)
            status = "buffered" if rng.random() < 0.1 else "accepted"
            self._push(early, "message.dlr", run_id=run_id, message_id=message_id, status=status)
        if stuck:
            return
        status = _bucket(rng.random(), FINAL_STATUSES, _FINAL_EDGES)
        if status == "expired":
            final = t + rng.randint(*EXPIRY_MS)
        else:
            median, sigma, _share = _bucket(rng.random(), DELAYS, _DELAY_EDGES)
            final = t + min(int(rng.lognormvariate(math.log(median), sigma)), DELAY_MAX_MS)
        final = max(final, early + rng.randint(50, 2_000))
        fields: dict[str, Any] = {"run_id": run_id, "message_id": message_id, "status": status}
        if status in ERROR_CODES:
            fields["error_code"] = _pick(rng, ERROR_CODES[status])
        self._push(final, "message.dlr", **fields)


def _pick(rng: Random, weighted: tuple[tuple[str, int], ...]) -> str:
    """One of the (value, weight) pairs' values, by weight."""
    values = [v for v, _w in weighted]
    return rng.choices(values, [w for _v, w in weighted])[0]


def _bucket(u: float, values: tuple[Any, ...], edges: tuple[float, ...]) -> Any:
    """The value whose cumulative share first exceeds ``u`` (the last one past them all)."""
    return next((v for v, edge in zip(values, edges, strict=True) if u < edge), values[-1])


def _run_error(rng: Random) -> dict[str, str]:
    code, message = rng.choice(
        (
            ("ENGINE", "worker crashed"),
            ("PROVIDER_DOWN", "provider unavailable"),
            ("INSUFFICIENT_CREDIT", "credit reservation exhausted"),
        )
    )
    return {"code": code, "message": message}


def generate(
    campaigns: int, recipients: int, seed: int, *, start: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Yield a simulated event stream, ordered by ``occurred_at``.

    ``generate_timed`` says the same, with each event's time in epoch ms.

    Args:
        campaigns: number of campaigns; each has 1-3 runs.
        recipients: recipients per run.
        seed: the whole stream, ids and timestamps included, is a function of it.
        start: where simulated time begins; default 2026-05-12 plus an offset
            drawn from the seed. Only live demos should pass the wall clock.

    Yields:
        JSON-ready event dicts (timestamps as RFC 3339 strings). Events with
        the same ``occurred_at`` keep a fixed, seed-determined order.
    """
    for _ms, event in generate_timed(campaigns, recipients, seed, start=start):
        yield event


def generate_timed(
    campaigns: int, recipients: int, seed: int, *, start: datetime | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``generate``'s stream as (``occurred_at`` in epoch ms, event) pairs."""
    if campaigns < 0 or recipients < 0:
        raise ValueError("campaigns and recipients must be >= 0")
    master = Random(seed)
    base_ms = _DAY0_MS + master.randrange(6 * 3600, 12 * 3600) * 1000
    if start is not None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        base_ms = int(start.timestamp() * 1000)
    timelines = []
    for c in range(campaigns):
        cseed = master.getrandbits(64)
        offset = master.randrange(0, 20 * 60_000)
        timelines.append(_Campaign(c, cseed, base_ms + offset, recipients).events())
    for ms, _c, _seq, event in heapq.merge(*timelines):
        yield ms, event


# -- live mode ----------------------------------------------------------------


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class LiveClock:
    """Simulated time onto the wall clock, for a live stream.

    An event is due at its simulated time shifted so that the first event is
    due now; a quiet stretch of simulated time longer than ``max_idle_ms``
    (the minutes between runs) is cut to ``max_idle_ms``, so a demo never
    sits idle. ``stamp`` gives the event the wall clock's time at that moment
    (never earlier than the previous stamp): when pacing holds events back
    they are stamped late, never early, and no stamp is ever in the future.
    Delays that span a cut stretch come out shorter than simulated.

    Args:
        max_idle_ms: the longest quiet stretch kept.
        now_ms: the wall clock in epoch ms (tests pass their own).
    """

    def __init__(self, max_idle_ms: int = 2_000, now_ms: Callable[[], int] = wall_ms) -> None:
        self.max_idle_ms = max_idle_ms
        self.now_ms = now_ms
        self._shift: int | None = None  # wall ms - simulated ms
        self._last_sim = 0
        self._last_stamp = 0

    def due(self, sim_ms: int) -> int:
        """The wall-clock ms at which an event of simulated time ``sim_ms`` is due;
        asked in stream order (asking again for the same event changes nothing)."""
        if self._shift is None:
            self._shift = self.now_ms() - sim_ms
        elif sim_ms - self._last_sim > self.max_idle_ms:
            self._shift -= sim_ms - self._last_sim - self.max_idle_ms
        self._last_sim = max(self._last_sim, sim_ms)
        return sim_ms + self._shift

    def stamp(self, sim_ms: int, event: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``event`` stamped with the wall clock now; a schedule it carries
        (``scheduled_at``) keeps its distance from the event's own time."""
        now = max(self.now_ms(), self._last_stamp)
        self._last_stamp = now
        out = {**event, "occurred_at": format_ms(now)}
        if "frozen_at" in event:
            out["frozen_at"] = out["occurred_at"]
        if "scheduled_at" in event:
            scheduled = datetime.fromisoformat(event["scheduled_at"])
            ahead = int(scheduled.timestamp() * 1000) - sim_ms
            out["scheduled_at"] = format_ms(now + ahead)
        return out


async def released(
    timed: Iterable[tuple[int, dict[str, Any]]],
    size: int,
    clock: LiveClock,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[list[tuple[int, dict[str, Any]]]]:
    """Chunks of at most ``size`` (simulated ms, event) pairs, each chunk yielded once
    its events are due on ``clock``; stamp them with ``clock.stamp`` as they are sent."""
    it = iter(timed)
    head = next(it, None)
    while head is not None:
        wait = clock.due(head[0]) - clock.now_ms()
        if wait > 0:
            await sleep(wait / 1000)
        now = clock.now_ms()
        chunk = []
        while head is not None and len(chunk) < size and clock.due(head[0]) <= now:
            chunk.append(head)
            head = next(it, None)
        if chunk:
            yield chunk


# -- writing and producing ---------------------------------------------------


class Pacer:
    """Token bucket on the monotonic clock: a sustained rate with small bursts."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 20)  # at most 50 ms worth of burst
        self.tokens = self.capacity
        self.last = time.monotonic()

    async def take(self, n: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


def _chunks(events: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(events)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def write_jsonl(
    events: Iterable[dict[str, Any]],
    out: IO[bytes],
    on_written: Callable[[int], None] | None = None,
) -> int:
    """Write events one per line with sorted keys; returns the count.

    ``on_written(n)`` is called after each chunk of ``n`` events.
    """
    n = 0
    for chunk in _chunks(events, 2_000):
        out.write(
            b"".join(
                orjson.dumps(e, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
                for e in chunk
            )
        )
        n += len(chunk)
        if on_written is not None:
            on_written(len(chunk))
    return n


async def produce_events(
    events: Iterable[dict[str, Any]],
    settings: Settings,
    *,
    rate: float = 0.0,
    array_size: int = 1,
    on_sent: Callable[[int], None] | None = None,
) -> None:
    """Create the topics, then produce the events, paced at ``rate`` events/s (0: flat out).

    ``on_sent(n)`` is called after each chunk of ``n`` events.

    Raises:
        TopicsError: the topics could not be created.
        EmitError: Kafka failed.
    """
    from projector.intake.topics import ensure_topics
    from projector.tools.emit import EventEmitter

    await ensure_topics(settings.bootstrap, settings.topics.all, settings.partitions)
    pacer = Pacer(rate) if rate > 0 else None
    # Small chunks under pacing keep the stream smooth; large ones amortise
    # the loop overhead when going flat out.
    size = max(1, min(1_000, int(rate / 50))) if pacer else 1_000
    async with EventEmitter(settings.bootstrap, settings.topics, array_size=array_size) as em:
        for chunk in _chunks(events, size):
            if pacer is not None:
                await pacer.take(len(chunk))
            # Generated events are valid by construction (the tests check it),
            # so skip re-validating them on the hot path.
            await em.emit_many(chunk, validate=False)
            if on_sent is not None:
                on_sent(len(chunk))
        await em.flush()
