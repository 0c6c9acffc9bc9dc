"""How the long-running processes (``worker``, ``serve``) set up CPython: collector and GIL.

**Garbage collector.** Every full (generation 2) collection scans every
tracked object and stops all threads, the API's included; under ingestion
those pauses were the whole tail of the status latency
(docs/decisions/0006-gc-freeze-and-rare-full-collections.md). Most tracked
objects are the imported modules, the app and its routes, which live as long
as the process and can never be garbage.
So, once the process is built: collect, then ``gc.freeze()`` what exists (no
later collection scans it again; objects freed by reference counting are
still freed), and run full collections a hundred times less often than
CPython's default. Young collections still reclaim short-lived cycles; a
full one only finds cycles that survived two younger ones, which this code
rarely makes.

**GIL switch interval.** The writer thread's DuckDB statements let go of the
GIL while they run, but duckdb-python takes it back after every task of a
query, and a thread that wants the GIL while another runs Python waits up to
the switch interval (CPython's default: 5 ms) before it may ask for it. Beside
a busy Python thread, that wait is paid hundreds of times per flush, and a
shorter interval shortens each one. Threads that are not contended never
wait, so a shorter interval costs nothing when the process is quiet.
``worker`` uses 1 ms. ``serve`` keeps CPython's interval: there the API's
thread is preempted as often as it preempts, and its status latency suffered
(docs/decisions/0025-gil-switch-interval.md).
``PROJECTOR_GIL_SWITCH_INTERVAL_MS`` overrides both.
"""

from __future__ import annotations

import gc
import logging
import sys

log = logging.getLogger(__name__)

# CPython's default is 10 young-generation (gen 1) collections per full one.
FULL_COLLECTION_EVERY = 1000
# `worker`'s GIL switch interval unless PROJECTOR_GIL_SWITCH_INTERVAL_MS says.
WORKER_SWITCH_INTERVAL_MS = 1.0


def settle(switch_interval_ms: float | None = None) -> None:
    """Call once, after start-up and before the stream: freeze what exists, space
    full GCs and, if given, set the GIL switch interval (None keeps CPython's)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    if switch_interval_ms is not None:
        sys.setswitchinterval(switch_interval_ms / 1000)
    # Read back from the interpreter: what the process runs with, for the operator
    # (and the test that starts each entry point) to see.
    log.info(
        "runtime settled: %d objects frozen, collection thresholds %s, GIL switch interval %g ms",
        gc.get_freeze_count(), gc.get_threshold(), sys.getswitchinterval() * 1000,
    )  # fmt: skip


def settle_worker(switch_interval_ms: float | None = None) -> None:
    """``settle`` for a process that runs the stream without the API (``worker``
    and the benchmarks' children that stand for it): the configured interval,
    else ``WORKER_SWITCH_INTERVAL_MS``."""
    settle(switch_interval_ms or WORKER_SWITCH_INTERVAL_MS)
