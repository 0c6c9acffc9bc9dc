"""Garbage-collector policy of the long-running processes (``worker``, ``serve``).

Measured with ``bench.status_latency`` (2026-11-30, docs/benchmarks.md (e)):
the serve process tracked ~290,000 objects, and every full (generation 2)
collection stopped all its threads, the API's included, for 150-200 ms
under ingestion: that was the whole tail of the status latency. Most of
those objects are the imported modules, the app and its routes, which live
as long as the process and can never be garbage.

So, once the process is built: collect, then ``gc.freeze()`` what exists
(no later collection scans it again; objects freed by reference counting are
still freed), and run full collections a hundred times less often than CPython's
default. Young collections still reclaim short-lived cycles; a full one only
finds cycles that survived two younger ones, which this code rarely makes.
"""

from __future__ import annotations

import gc

# CPython's default is 10 young-generation (gen 1) collections per full one.
FULL_COLLECTION_EVERY = 1000


def settle() -> None:
    """Call once, after start-up and before the stream: freeze what exists, space full GCs."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
