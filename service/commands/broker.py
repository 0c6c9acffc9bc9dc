"""``projector broker``: the embedded broker in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING

from service.commands.base import command, create_topics, option, positive_int

if TYPE_CHECKING:
    from projector.settings import Settings


@command(
    "broker",
    "run the embedded Tansu broker in the foreground",
    option("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)"),
    option("--port", type=int, default=9092, help="listen port (default 9092; 0 = free port)"),
    option(
        "--partitions", type=positive_int, help="also create the contract topics with N partitions"
    ),
    option("--no-topics", action="store_true", help="do not create the contract topics"),
)
def run(args: argparse.Namespace, settings: Settings) -> int:
    from projector.tools.broker import EmbeddedBroker
    from projector.tools.errors import BrokerError, BrokerPortInUseError

    stop_requested = threading.Event()

    def _request_stop(signum: int, frame: object) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    broker = EmbeddedBroker(host=args.host, port=args.port)
    try:
        try:
            broker.start()
        except BrokerPortInUseError as e:
            print(
                f"projector broker: {e}; stop whatever holds it, or pass --port 0 for a free port",
                file=sys.stderr,
            )
            return 1
        except BrokerError as e:
            print(f"projector broker: {e}", file=sys.stderr)
            return 1
        if not args.no_topics:
            partitions = create_topics("broker", broker.bootstrap, settings, args.partitions)
            if partitions is None:
                return 1
            topics_note = f"topics {', '.join(settings.topics.all)} ({partitions} partitions)"
        else:
            topics_note = "no topics created"
        print(f"bootstrap: {broker.bootstrap}", flush=True)
        print(
            f"hint: export PROJECTOR_BOOTSTRAP={broker.bootstrap}; {topics_note}; "
            f"memory storage, lost on exit; log {broker.log_path}; Ctrl-C to stop",
            flush=True,
        )
        while not stop_requested.wait(0.2):
            if not broker.running:
                print(
                    f"projector broker: broker exited unexpectedly; log tail:\n{broker.log_tail()}",
                    file=sys.stderr,
                )
                return 1
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
