"""``projector demo``: broker + projector + API + simulated campaigns, live
(``projector.tools.demo`` says how)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from service.commands.base import HTTP, command, option

if TYPE_CHECKING:
    from projector.settings import Settings


@command(
    "demo",
    "broker + projector + API + simulated campaigns, live",
    *HTTP,
    option("--no-sim", action="store_true", help="only serve: no simulated stream"),
    option("--rate", type=float, default=200.0, help="simulated events per second (default 200)"),
    option("--campaigns", type=int, default=3, help="simulated campaigns (default 3)"),
    option("--recipients", type=int, default=3000, help="recipients per run (default 3000)"),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from projector.tools.demo import Demo

    if args.rate < 0 or args.campaigns < 0 or args.recipients < 0:
        print("projector demo: --rate, --campaigns and --recipients must be >= 0", file=sys.stderr)
        return 2
    if settings.log_level.upper() != "DEBUG":
        # The banner says where the broker runs; its start-up lines are noise here.
        for name in ("projector.tools.broker", "projector.intake.topics"):
            logging.getLogger(name).setLevel(logging.WARNING)
    demo = Demo(
        settings,
        [sys.executable, "-m", "service", "serve"],
        simulate=not args.no_sim,
        rate=args.rate,
        campaigns=args.campaigns,
        recipients=args.recipients,
    )
    return asyncio.run(demo.run())
