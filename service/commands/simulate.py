"""``projector simulate``: a seeded campaign stream to Kafka, or to a JSONL file."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from service.commands.base import BOOTSTRAP, command, option

if TYPE_CHECKING:
    from projector.settings import Settings


@dataclass
class Progress:
    """Progress on stderr: a ``\\r`` line at most 4x/s on a TTY, else only a summary."""

    stream: IO[str] = field(default_factory=lambda: sys.stderr)
    started: float = field(default_factory=time.monotonic)
    count: int = 0
    _shown: float = 0.0

    def __post_init__(self) -> None:
        self.live = self.stream.isatty()

    def add(self, n: int) -> None:
        self.count += n
        if self.live:
            now = time.monotonic()
            if now - self._shown >= 0.25:
                self._shown = now
                self.stream.write("\r" + self._line(now))
                self.stream.flush()

    def _line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        return f"{self.count:,} events  {self.count / elapsed:,.0f} events/s  {elapsed:.1f}s"

    def finish(self, what: str) -> None:
        line = self._line(time.monotonic())
        self.stream.write(("\r" if self.live else "") + f"{what}: {line}\n")
        self.stream.flush()


@command(
    "simulate",
    "emit a realistic simulated campaign stream",
    *BOOTSTRAP,
    option("--campaigns", type=int, default=3, help="number of campaigns (default 3)"),
    option("--recipients", type=int, default=2000, help="recipients per run (default 2000)"),
    option("--rate", type=float, default=0.0, help="events per second (0 = as fast as possible)"),
    option("--seed", type=int, default=1, help="random seed (default 1)"),
    option("--out", help="write JSONL to this file instead of producing"),
    option("--array-size", type=int, default=1, help="events per Kafka record (default 1)"),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    from projector.tools.simulate import generate, write_jsonl

    events = generate(args.campaigns, args.recipients, args.seed)
    progress = Progress()
    if args.out:
        with open(args.out, "wb") as out:
            write_jsonl(events, out, progress.add)
        progress.finish(f"wrote {args.out}")
        return 0

    import asyncio

    from projector.intake.errors import TopicsError
    from projector.tools.errors import EmitError
    from projector.tools.simulate import produce_events

    try:
        asyncio.run(
            produce_events(
                events,
                settings,
                rate=args.rate,
                array_size=args.array_size,
                on_sent=progress.add,
            )
        )
    except (EmitError, TopicsError) as e:
        progress.finish("stopped")
        print(f"projector simulate: {e}", file=sys.stderr)
        return 1
    progress.finish(f"produced to {settings.bootstrap}")
    return 0
