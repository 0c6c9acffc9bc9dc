"""The ``projector`` command line: one subcommand per module of ``service.commands``.

Each command module declares its options beside its handler (faust's
``faust/cli/*.py`` on ``faust/cli/base.py`` is the model); this module puts
them under one parser, turns the options the user typed into ``Settings``
(the rest comes from ``PROJECTOR_*`` environment variables), sets up logging
and runs the chosen handler. Command modules import nothing heavy until their
handler runs, so building the parser costs the same for every command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from projector.settings import Settings
from service.commands import (
    api,
    archive,
    broker,
    cluster,
    demo,
    export_schemas,
    produce,
    replay,
    serve,
    simulate,
    swap,
    topics,
    verify,
    worker,
)
from service.commands.base import SETTING_OPTIONS, Command
from service.logs import configure_logging

# In the order ``projector --help`` lists them.
COMMANDS: tuple[Command, ...] = (
    broker.run,
    topics.run,
    worker.run,
    serve.run,
    api.run,
    simulate.run,
    produce.run,
    demo.run,
    replay.run,
    archive.run,
    verify.run,
    swap.run,
    cluster.run,
    export_schemas.run,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="projector",
        description="Campaign analytics projector: Kafka events in, DuckDB projections, HTTP out.",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (env PROJECTOR_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS:
        cmd.add_to(sub)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """``Settings`` from the environment, overridden by the options the user typed."""
    overrides: dict[str, Any] = {}
    for name in SETTING_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except Exception as e:  # pydantic ValidationError: show it as a usage error
        print(f"projector: invalid setting: {e}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    command: Command = args.run
    try:
        return command(args, settings)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
