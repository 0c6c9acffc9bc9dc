"""Child of the serve benchmarks: produce a JSONL file of events at a paced rate.

The benchmark process measures latency; producing in it would put the
producer's CPU and its garbage collections into the latencies it records.
Settings (broker, topics) come from ``PROJECTOR_*`` as for every command.

Usage: python -m bench._paced_produce FILE RATE
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from projector.settings import Settings
from projector.tools.simulate import produce_events


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as f:
        for line in f:
            yield orjson.loads(line)


def main() -> int:
    path, rate = Path(sys.argv[1]), float(sys.argv[2])
    asyncio.run(produce_events(_lines(path), Settings(), rate=rate))
    print("produced", path, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
