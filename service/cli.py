"""The ``projector`` command line: one subcommand per job.

Options default to ``None`` so that only what the user typed overrides the
settings read from ``PROJECTOR_*`` environment variables. Handlers are
imported lazily so ``projector broker`` does not pay for faust or FastAPI.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from projector.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]

# Option name on the command line -> field of Settings it overrides.
_SETTING_OPTIONS = {
    "bootstrap": "bootstrap",
    "db": "db",
    "api_keys": "api_keys",
    "host": "host",
    "port": "port",
    "partitions": "partitions",
    "flush_max_events": "flush_max_events",
    "flush_interval_ms": "flush_interval_ms",
    "log_level": "log_level",
}


def _add_bootstrap(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help="Kafka bootstrap HOST:PORT (env PROJECTOR_BOOTSTRAP)")


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="DuckDB file (env PROJECTOR_DB)")


def _add_http(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="HTTP bind address (env PROJECTOR_HOST)")
    p.add_argument("--port", type=int, help="HTTP port (env PROJECTOR_PORT)")
    p.add_argument("--api-keys", help="API keys JSON file (env PROJECTOR_API_KEYS)")


def _add_worker_tuning(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partitions", type=int, help="partitions per topic when creating (default 4)")
    p.add_argument("--flush-max-events", type=int, help="flush after this many events")
    p.add_argument("--flush-interval-ms", type=int, help="flush at least this often")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="projector",
        description="Campaign analytics projector: Kafka events in, DuckDB projections, HTTP out.",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (env PROJECTOR_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, target: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler_path=target)
        return p

    p = command(
        "broker",
        "projector.tools.broker:run_cli",
        "run the embedded Tansu broker in the foreground",
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=9092, help="listen port (default 9092; 0 = free port)"
    )
    p.add_argument(
        "--partitions", type=int, help="also create the contract topics with N partitions"
    )
    p.add_argument("--no-topics", action="store_true", help="do not create the contract topics")

    p = command(
        "topics", "projector.intake.topics:run_cli", "create the contract topics (idempotent)"
    )
    _add_bootstrap(p)
    p.add_argument("--partitions", type=int, help="partitions per topic (default 4)")

    p = command(
        "worker", "projector.intake.worker:run_cli", "run the projector alone (Kafka -> DuckDB)"
    )
    _add_bootstrap(p)
    _add_db(p)
    _add_worker_tuning(p)
    p.add_argument(
        "--until-caught-up",
        action="store_true",
        help="exit 0 once every partition is applied up to the log end seen at start",
    )

    p = command(
        "serve", "service.serve:run_cli", "run the projector and the HTTP API in one process"
    )
    _add_bootstrap(p)
    _add_db(p)
    _add_http(p)
    _add_worker_tuning(p)

    p = command("api", "api.server:run_cli", "serve a DuckDB file read-only, without a projector")
    _add_db(p)
    _add_http(p)

    p = command(
        "simulate", "projector.tools.simulate:run_cli", "emit a realistic simulated campaign stream"
    )
    _add_bootstrap(p)
    p.add_argument("--campaigns", type=int, default=3, help="number of campaigns (default 3)")
    p.add_argument("--recipients", type=int, default=2000, help="recipients per run (default 2000)")
    p.add_argument(
        "--rate", type=float, default=0.0, help="events per second (0 = as fast as possible)"
    )
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--out", help="write JSONL to this file instead of producing")
    p.add_argument("--array-size", type=int, default=1, help="events per Kafka record (default 1)")

    p = command(
        "produce",
        "projector.tools.produce:run_cli",
        "validate a JSONL file of events and produce it",
    )
    p.add_argument("file", help="JSONL file, one event per line")
    _add_bootstrap(p)
    p.add_argument(
        "--skip-invalid", action="store_true", help="send the valid lines, skip the bad ones"
    )
    p.add_argument("--array-size", type=int, default=1, help="events per Kafka record (default 1)")

    p = command(
        "demo",
        "projector.tools.demo:run_cli",
        "broker + projector + API + simulated campaigns, live",
    )
    _add_http(p)
    p.add_argument("--no-sim", action="store_true", help="only serve: no simulated stream")
    p.add_argument(
        "--rate", type=float, default=200.0, help="simulated events per second (default 200)"
    )
    p.add_argument("--campaigns", type=int, default=3, help="simulated campaigns (default 3)")
    p.add_argument("--recipients", type=int, default=3000, help="recipients per run (default 3000)")

    p = command(
        "replay",
        "projector.rebuild.replay:run_cli",
        "rebuild a fresh database from Kafka or an archive",
    )
    _add_bootstrap(p)
    p.add_argument("--db", required=True, help="the NEW DuckDB file to build (must not exist)")
    p.add_argument("--since", help="start from the offsets for this RFC 3339 timestamp")
    p.add_argument("--from-archive", help="rebuild from this Parquet archive folder first")
    p.add_argument(
        "--decode-workers",
        type=int,
        default=None,
        help=(
            "reader processes that fetch and decode Kafka records "
            "(default: one per CPU; 0: in this process)"
        ),
    )
    p.add_argument(
        "--no-kafka", action="store_true", help="with --from-archive: do not continue from Kafka"
    )

    p = command(
        "archive",
        "projector.rebuild.archive:run_cli",
        "archive every accepted event to Parquet by date",
    )
    _add_bootstrap(p)
    p.add_argument("--dir", required=True, help="archive folder")
    p.add_argument("--until-caught-up", action="store_true", help="exit once at the log end")

    p = command(
        "verify", "projector.store.verify:run_cli", "compare the projections of two databases"
    )
    p.add_argument(
        "--db", action="append", dest="dbs", required=True, help="give twice: --db A --db B"
    )

    p = command(
        "swap", "projector.rebuild.swap:run_cli", "switch a running serve to a rebuilt database"
    )
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the running serve's base URL")
    p.add_argument("--db", required=True, help="the rebuilt database file")
    p.add_argument("--admin-key", help="key holding the admin scope (env PROJECTOR_ADMIN_KEY)")

    p = command(
        "export-schemas", "schemas.export:run_cli", "write the events' JSON Schemas into docs/"
    )
    p.add_argument("--out", default="docs/schemas", help="output folder (default docs/schemas)")
    p.add_argument("--check", action="store_true", help="exit 1 if the files on disk are stale")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for option, field in _SETTING_OPTIONS.items():
        value = getattr(args, option, None)
        if value is not None:
            overrides[field] = value
    return Settings(**overrides)


def _resolve(path: str) -> Handler:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except Exception as e:  # pydantic ValidationError: show it as a usage error
        print(f"projector: invalid setting: {e}", file=sys.stderr)
        return 2
    from service.logs import configure_logging

    configure_logging(settings.log_level)
    handler = _resolve(args.handler_path)
    try:
        return handler(args, settings)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
