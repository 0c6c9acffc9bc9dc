"""Child process of ``faust_ceiling``: a bare faust agent that only decodes records.

The faust app is the projector's own (``projector.intake.worker.new_faust_app``:
raw serializers, session/rebalance timeouts 6 s, heartbeat 1 s, fetch wait).
It counts decoded events and writes, when the expected count is reached,
the monotonic times of the first and last record seen (so the group join is
not in the measured window), then stops itself the way the projector does
(SIGTERM to its own worker).

``--decoder models`` (the default, as (a) always measured) decodes with
``decode_value`` (pydantic); ``--decoder fast`` as the projector's loop does:
the compiled fast path, ``decode_value`` only for what it declines.

Usage: python -m bench._faust_child --bootstrap H:P --topic T --expect N --out F [--decoder fast]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
import uuid

import faust

from projector.intake.worker import new_faust_app, run_worker
from projector.settings import Settings
from schemas import decode_value
from schemas.fastdecode import fast_events


def _count_fast(value: bytes) -> int:
    got = fast_events(value)
    return len(decode_value(value).events) if got is None else len(got[0])


def _count_models(value: bytes) -> int:
    return len(decode_value(value).events)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--expect", type=int, required=True, help="events to see before stopping")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--out", required=True)
    ap.add_argument("--decoder", choices=("models", "fast"), default="models")
    args = ap.parse_args()
    count = _count_fast if args.decoder == "fast" else _count_models
    began = time.monotonic()

    app = new_faust_app(
        f"bench-ceiling-{uuid.uuid4().hex[:8]}",
        args.bootstrap,
        partitions=args.partitions,
        fetch_max_wait_ms=Settings().fetch_max_wait_ms,
    )
    channel = app.topic(args.topic, value_serializer="raw", key_serializer="raw")
    state = {"records": 0, "events": 0, "first": 0.0, "last": 0.0, "cpu0": 0.0, "done": False}

    async def ceiling(stream: faust.StreamT[bytes]) -> None:
        # Iterated as the projector does (projector.intake.worker: no per-record
        # acks, the record from ``current_event``), which is also faust's
        # fastest way: plain ``async for value in stream`` acks every record
        # (docs/decisions/0011-agent-iterates-the-stream.md).
        records = stream.noack()
        async for _ in records:
            event = records.current_event
            if event is None:
                continue
            value = event.message.value
            now = time.monotonic()
            if not state["records"]:
                state["first"] = now
                state["cpu0"] = time.process_time()
            state["records"] += 1
            state["events"] += count(value)
            if state["events"] >= args.expect and not state["done"]:
                state["done"] = True
                state["last"] = time.monotonic()
                cpu = time.process_time() - state["cpu0"]
                with open(args.out, "w") as f:
                    json.dump({
                        "records": state["records"],
                        "events": state["events"],
                        "startup_s": state["first"] - began,
                        "elapsed_s": state["last"] - state["first"],
                        "cpu_s": cpu,
                        # CLOCK_MONOTONIC is one clock for every process on
                        # the machine: bench.split_bound lines this window
                        # up with another child's flushes.
                        "first_monotonic": state["first"],
                        "last_monotonic": state["last"],
                    }, f)
                os.kill(os.getpid(), signal.SIGTERM)

    app.agent(channel, name="ceiling", concurrency=1)(ceiling)
    return run_worker(app)


if __name__ == "__main__":
    raise SystemExit(main())
