"""``projector replay``: rebuild a fresh database from Kafka or an archive."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.commands.base import BOOTSTRAP, command, option

if TYPE_CHECKING:
    from datetime import datetime

    from projector.settings import Settings


@command(
    "replay",
    "rebuild a fresh database from Kafka or an archive",
    *BOOTSTRAP,
    option("--db", help="the NEW DuckDB file to build (must not exist)"),
    option(
        "--data-dir",
        metavar="DIR",
        help="build a shard per partition in DIR instead (none of them may exist)",
    ),
    option(
        "--partition",
        type=int,
        action="append",
        dest="partition",
        help="with --data-dir: only this partition's shard (repeat for several)",
    ),
    option(
        "--workers",
        type=int,
        default=None,
        help="with --data-dir: shards built side by side (default: one per CPU)",
    ),
    option("--since", help="start from the offsets for this RFC 3339 timestamp"),
    option("--from-archive", help="rebuild from this Parquet archive folder first"),
    option(
        "--decode-workers",
        type=int,
        default=None,
        help=(
            "reader processes that fetch and decode Kafka records "
            "(default: one per CPU; 0: in this process)"
        ),
    ),
    option(
        "--no-kafka", action="store_true", help="with --from-archive: do not continue from Kafka"
    ),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when built, 2 when refused or failed."""
    from projector.rebuild.errors import ReplayError
    from projector.rebuild.replay import parse_since, replay

    if (args.db is None) == (args.data_dir is None):
        print("projector replay: give --db FILE or --data-dir DIR (one of them)", file=sys.stderr)
        return 2
    if args.data_dir is None and (args.partition or args.workers is not None):
        print("projector replay: --partition and --workers go with --data-dir", file=sys.stderr)
        return 2
    try:
        since = parse_since(args.since) if args.since else None
        if since is not None and args.from_archive:
            raise ReplayError("--since applies to Kafka replays; not with --from-archive")
        if args.no_kafka and not args.from_archive:
            raise ReplayError("--no-kafka needs --from-archive")
        if args.decode_workers is not None and args.decode_workers < 0:
            raise ReplayError("--decode-workers must be 0 or more")
        if args.workers is not None and args.workers < 1:
            raise ReplayError("--workers must be 1 or more")
        if args.data_dir is not None:
            return _shards(args, settings, since)
        out = replay(
            settings,
            Path(args.db),
            since=since,
            from_archive=Path(args.from_archive) if args.from_archive else None,
            use_kafka=not args.no_kafka,
            decode_workers=args.decode_workers,
        )
    except ReplayError as e:
        print(f"projector replay: {e}", file=sys.stderr)
        return 2
    s = out.stats
    sources = (
        "archive + kafka"
        if args.from_archive and out.kafka
        else ("archive" if args.from_archive else "kafka")
    )
    print(
        f"projector replay: {s.events:,} events, {s.deadletters:,} dead letters from {sources} "
        f"into {args.db} in {out.elapsed:.1f}s ({s.events / max(out.elapsed, 1e-9):,.0f} events/s, "
        "folded in one transaction; primary keys are built by the first writer that opens it)",
        flush=True,
    )
    print(
        "offsets: " + ", ".join(f"{t}[{p}]={o}" for (t, p), o in sorted(out.offsets.items())),
        flush=True,
    )
    return 0


def _shards(args: argparse.Namespace, settings: Settings, since: datetime | None) -> int:
    from projector.rebuild.shards import rebuild_shards

    out = rebuild_shards(
        settings,
        Path(args.data_dir),
        partitions=args.partition,
        workers=args.workers,
        since=since,
        from_archive=Path(args.from_archive) if args.from_archive else None,
        use_kafka=not args.no_kafka,
    )
    print(
        f"projector replay: {out.events:,} events, {out.deadletters:,} dead letters into "
        f"{len(out.partitions)} shards in {args.data_dir} in {out.elapsed:.1f}s "
        f"({out.events / max(out.elapsed, 1e-9):,.0f} events/s, {out.workers} workers)",
        flush=True,
    )
    return 0
