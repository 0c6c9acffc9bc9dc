"""What a command is: a name, its options and its handler, kept together.

Modelled on faust's ``faust/cli/base.py`` (``option``, ``argument``, ``Command``),
on argparse instead of click so that help texts, usage errors (exit 2) and
defaults stay what they were. A command module declares its options in the
``@command(...)`` decorator right above its handler; ``service.cli`` builds the
parser from them.

Command modules import only this module and the standard library at import
time: ``service.cli`` imports every one of them to build the parser, and
``projector broker --help`` must not pay for faust, FastAPI or DuckDB. Each
handler imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from projector.settings import Settings
    from projector.store.shards import Shards
    from projector.store.writer import Store

Handler = Callable[[argparse.Namespace, "Settings"], int]


@dataclass(frozen=True)
class Option:
    """One ``add_argument`` call, kept as data until the parser is built."""

    flags: tuple[str, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(*self.flags, **self.kwargs)


def option(*flags: str, **kwargs: Any) -> Option:
    """A ``--flag`` option; the keywords are ``argparse``'s."""
    return Option(flags, kwargs)


def argument(name: str, **kwargs: Any) -> Option:
    """A positional argument; the keywords are ``argparse``'s."""
    return Option((name,), kwargs)


@dataclass(frozen=True)
class Command:
    """A subcommand: ``projector NAME [OPTIONS]`` runs ``handler(args, settings)``.

    Calling the command calls its handler, so tests can run one with settings
    they built themselves (topic names, for instance, have no option).
    """

    name: str
    help: str
    options: tuple[Option, ...]
    handler: Handler

    def __call__(self, args: argparse.Namespace, settings: Settings) -> int:
        return self.handler(args, settings)

    def add_to(self, commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        parser = commands.add_parser(self.name, help=self.help, description=self.help)
        for opt in self.options:
            opt.add_to(parser)
        parser.set_defaults(run=self)


def command(name: str, help: str, *options: Option) -> Callable[[Handler], Command]:
    """Declare a subcommand: its name, one-line help and options, above its handler."""

    def wrap(handler: Handler) -> Command:
        return Command(name, help, options, handler)

    return wrap


# Options that override a field of ``Settings`` of the same name (the others
# only reach their handler). Options default to None so that only what the
# user typed overrides the ``PROJECTOR_*`` environment. Any command's option
# of one of these names counts: ``broker --port`` is range-checked by Settings
# as ``serve --port`` is.
SETTING_OPTIONS = frozenset(
    {
        "bootstrap",
        "db",
        "data_dir",
        "api_keys",
        "host",
        "port",
        "partitions",
        "flush_max_events",
        "flush_interval_ms",
        "log_level",
        "admin_key",
        "group_id",
        "advertise",
    }
)

# Option groups shared by several commands.
BOOTSTRAP = (option("--bootstrap", help="Kafka bootstrap HOST:PORT (env PROJECTOR_BOOTSTRAP)"),)
DB = (option("--db", help="DuckDB file (env PROJECTOR_DB)"),)
# A store per partition, so that a partition can move between nodes alone.
DATA_DIR = (
    option(
        "--data-dir",
        metavar="DIR",
        help="a DuckDB file per partition in DIR instead of --db; share DIR between "
        "nodes to move a partition by reopening its file (env PROJECTOR_DATA_DIR)",
    ),
)
HTTP = (
    option("--host", help="HTTP bind address (env PROJECTOR_HOST)"),
    option("--port", type=int, help="HTTP port (env PROJECTOR_PORT)"),
    option("--api-keys", help="API keys JSON file (env PROJECTOR_API_KEYS)"),
)
# Nodes of one consumer group split the partitions (docs/operations.md, "Scaling out").
MEMBERSHIP = (
    option(
        "--group",
        dest="group_id",
        help="consumer group: nodes of one group split the partitions (env PROJECTOR_GROUP_ID)",
    ),
    option(
        "--advertise",
        metavar="URL",
        help="this node's base URL for the other nodes (env PROJECTOR_ADVERTISE; "
        "default http://HOST:PORT as bound)",
    ),
)
WORKER_TUNING = (
    option("--partitions", type=int, help="partitions per topic when creating (default 4)"),
    option("--flush-max-events", type=int, help="flush after this many events"),
    option("--flush-interval-ms", type=int, help="flush at least this often"),
)


def open_live_store(settings: Settings, name: str) -> Store | Shards | None:
    """The live database opened for ``projector NAME``, or None after saying why not.

    A retired database (swapped out) or one that cannot be opened (locked,
    another layout version) is refused the same way by every long-running
    command. With ``--data-dir``, the node's shards (opened as the group
    assigns their partitions).
    """
    from projector.store.errors import StoreError
    from projector.store.retired import retired_note
    from projector.store.shards import live_shards
    from projector.store.writer import live_store

    if settings.data_dir is not None:
        try:
            return live_shards(settings).open()
        except StoreError as e:
            print(f"projector {name}: {e}")
            return None
    if (note := retired_note(settings.db)) is not None:
        print(f"projector {name}: {note}")
        return None
    try:
        return live_store(settings).open()
    except StoreError as e:
        print(f"projector {name}: {e}")
        return None


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (e.g. ``--partitions``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def create_topics(
    name: str, bootstrap: str, settings: Settings, partitions: int | None
) -> int | None:
    """Create the contract topics for ``projector NAME`` (idempotent): their partition
    count (``partitions``, else the setting), or None after saying why not on stderr.

    ``ensure_topics`` turns every broker failure into ``TopicsError``; anything
    else is a bug and goes up with its traceback.
    """
    import sys

    from projector.intake.errors import TopicsError
    from projector.intake.topics import ensure_topics_sync

    count = partitions or settings.partitions
    try:
        ensure_topics_sync(bootstrap, settings.topics.all, count)
    except TopicsError as e:
        print(f"projector {name}: could not create topics: {e}", file=sys.stderr)
        return None
    return count
