"""``projector demo``: the whole product on one machine, live.

Starts the embedded broker, creates the topics, writes a demo API keys file,
runs ``projector serve`` as a child process over a fresh DuckDB file, waits
until the API is ready and then plays the simulator live: each event is sent
when its simulated time comes (quiet stretches cut to a few seconds, the pace
capped by ``--rate``) and stamped with the wall clock (``simulate.LiveClock``).
Unless ``PROJECTOR_RECEIPT_WINDOW`` is set, the child's receipt window is
``DEMO_RECEIPT_WINDOW``, so receipts that never come show as overdue within
minutes rather than days. It prints the API docs URL, a ready-to-paste ``curl`` for a
campaign that is about to run, and a one-line progress (events produced,
events applied and lag, read from the child's ``/metrics``).

Ctrl-C or SIGTERM stops the simulator, then the child (SIGTERM, SIGKILL after
10 s), then the broker, and exits 0 with nothing left running. When the
simulated stream ends the demo keeps serving until stopped. ``--no-sim`` only
serves: produce your own events to the printed bootstrap address.

Everything lands in ``var/demo/`` under the current directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from projector.tools.broker import (
    BrokerError,
    BrokerPortInUseError,
    EmbeddedBroker,
    check_port_free,
    free_port,
    spawn_child,
)
from projector.tools.errors import DemoError
from projector.tools.simulate import WORKSPACES, LiveClock, Pacer, generate_timed, released

if TYPE_CHECKING:
    from projector.settings import Settings

DEMO_DIR = Path("var/demo")
DEMO_SEED = 1
# The receipt window of the demo's serve: minutes, so that the simulator's
# receipts that never come are counted overdue while one watches.
DEMO_RECEIPT_WINDOW = "3m"
ALL_SCOPES = ("campaigns:read", "analytics:read", "pii:read")
# faust's group join on Tansu takes seconds (docs/benchmarks.md#method-notes) and a
# cold first import longer: the margin is wide so a slow machine still starts.
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0  # SIGTERM -> SIGKILL for the serve child
REFRESH = 0.5  # progress refreshes per TTY line
PLAIN_EVERY = 5.0  # a plain progress line this often when stdout is not a TTY

_METRIC = re.compile(
    r"^(projector_events_applied_total|projector_lag_records_total)\s+(\S+)$", re.M
)


def demo_key(workspace_id: str) -> str:
    """``ws_alpha`` -> ``demo-key-alpha``."""
    return "demo-key-" + workspace_id.removeprefix("ws_")


def write_keys(path: Path) -> dict[str, str]:
    """A keys file with one all-scopes key per simulated workspace; workspace -> key."""
    keys = {ws: demo_key(ws) for ws in WORKSPACES}
    doc = {
        "keys": [
            {"key": k, "workspace_id": ws, "scopes": list(ALL_SCOPES)} for ws, k in keys.items()
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return keys


def _check_port_free(host: str, port: int) -> None:
    try:
        check_port_free(host, port)
    except BrokerPortInUseError as e:
        raise DemoError(
            f"{e} (another demo or serve?); stop it or pick another port with --port"
        ) from e
    except BrokerError as e:
        raise DemoError(str(e)) from e


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - our own loopback URL
            return int(r.status), r.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except (OSError, ValueError):
        return 0, b""


def parse_metrics(text: str) -> tuple[int | None, int | None]:
    """``projector_events_applied_total`` and ``projector_lag_records_total`` from /metrics."""
    found = {name: int(float(value)) for name, value in _METRIC.findall(text)}
    return found.get("projector_events_applied_total"), found.get("projector_lag_records_total")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class _Live:
    """The campaign to point the newcomer at: the first one the stream starts a run for."""

    campaign_id: str
    workspace_id: str
    name: str


Timed = tuple[int, dict[str, Any]]


def _peek_live(events: Iterator[Timed]) -> tuple[_Live | None, Iterator[Timed]]:
    """The campaign of the first ``run.scheduled``, and the (ms, event) stream with
    nothing lost."""
    head: list[Timed] = []
    names: dict[str, str] = {}
    live = None
    for item in events:
        head.append(item)
        event = item[1]
        if event["type"] == "campaign.defined":
            names[event["campaign_id"]] = event["name"]
        elif event["type"] == "run.scheduled":
            cid = event["campaign_id"]
            live = _Live(cid, event["workspace_id"], names.get(cid, ""))
            break
    return live, itertools.chain(head, events)


class Demo:
    """The demo's processes and its terminal output; ``run()`` returns the exit code.

    Args:
        settings: the broker's topics and partitions, the HTTP address, and
            ``api_keys`` (None: a demo keys file is written).
        serve_cmd: the argv that starts ``projector serve``; the demo adds
            the broker, database, address and keys options. Given by the
            composition root, which owns the command line.
        simulate: play simulated campaigns; False only serves.
        rate: simulated events per second (0: as fast as possible).
        campaigns: simulated campaigns.
        recipients: recipients per simulated run.
    """

    def __init__(
        self,
        settings: Settings,
        serve_cmd: Sequence[str],
        *,
        simulate: bool,
        rate: float,
        campaigns: int,
        recipients: int,
    ) -> None:
        self.serve_cmd = list(serve_cmd)
        self.simulate = simulate
        self.rate = rate
        self.campaigns = campaigns
        self.recipients = recipients
        self.settings = settings
        self.host = settings.host
        self.port = settings.port
        self.out: IO[str] = sys.stdout
        self.tty = self.out.isatty()
        self.dir = DEMO_DIR
        self.db = self.dir / "projector.duckdb"
        self.serve_log = self.dir / "serve.log"
        self.broker: EmbeddedBroker | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self.stop = asyncio.Event()
        self.produced = 0
        self.sim_done = False
        self.started = time.monotonic()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def say(self, line: str = "") -> None:
        self.out.write(line + "\n")
        self.out.flush()

    # -- starting ------------------------------------------------------------

    def _start_broker(self) -> str:
        from projector.intake.topics import TopicsError, ensure_topics_sync

        self.broker = EmbeddedBroker(host="127.0.0.1", port=0, log_path=self.dir / "broker.log")
        try:
            self.broker.start()
        except BrokerPortInUseError as e:  # pragma: no cover - port 0 picks a free one
            raise DemoError(f"broker: {e}") from e
        except BrokerError as e:
            raise DemoError(f"the embedded broker did not start: {e}") from e
        try:
            ensure_topics_sync(
                self.broker.bootstrap, self.settings.topics.all, self.settings.partitions
            )
        except TopicsError as e:
            raise DemoError(str(e)) from e
        return self.broker.bootstrap

    def _start_serve(self, bootstrap: str, keys_file: Path) -> None:
        for leftover in (self.db, Path(f"{self.db}.wal")):
            leftover.unlink(missing_ok=True)
        cmd = [
            *self.serve_cmd,
            "--bootstrap", bootstrap,
            "--db", str(self.db),
            "--host", self.host,
            "--port", str(self.port),
            "--api-keys", str(keys_file),
        ]  # fmt: skip
        env = {**os.environ}
        env.setdefault("PROJECTOR_RECEIPT_WINDOW", DEMO_RECEIPT_WINDOW)
        with open(self.serve_log, "wb") as log:
            self.child = spawn_child(cmd, log, env)

    async def _wait_ready(self) -> bool:
        """True once /readyz answers 200; False if asked to stop first."""
        assert self.child is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.stop.is_set():
            code = self.child.poll()
            if code is not None:
                raise DemoError(
                    f"projector serve exited with code {code} before it was ready; "
                    f"log {self.serve_log}:\n{_tail(self.serve_log)}"
                )
            status, _ = await asyncio.to_thread(_http_get, f"{self.base}/readyz", 1.0)
            if status == 200:
                return True
            if time.monotonic() > deadline:
                raise DemoError(
                    f"projector serve was not ready within {READY_TIMEOUT:.0f}s; "
                    f"log {self.serve_log}:\n{_tail(self.serve_log)}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.2)
        return False

    # -- running -------------------------------------------------------------

    async def _simulate(self, bootstrap: str, events: Iterator[Timed]) -> None:
        from projector.tools.emit import EventEmitter

        rate = self.rate
        pacer = Pacer(rate) if rate > 0 else None
        size = max(1, min(1_000, int(rate / 50))) if pacer else 1_000
        clock = LiveClock()
        async with EventEmitter(bootstrap, self.settings.topics) as em:
            async for chunk in released(events, size, clock):
                if pacer is not None:
                    await pacer.take(len(chunk))
                # Generated events are valid by construction; stamped as they go.
                await em.emit_many([clock.stamp(ms, e) for ms, e in chunk], validate=False)
                self.produced = em.events_sent
            await em.flush()
            self.produced = em.events_sent

    async def _progress(self) -> None:
        last_plain = 0.0
        applied = lag = None
        while not self.stop.is_set():
            status, body = await asyncio.to_thread(_http_get, f"{self.base}/metrics", 1.0)
            if status == 200:
                applied, lag = parse_metrics(body.decode("utf-8", "replace"))
            now = time.monotonic()
            shown_applied = f"{applied:,}" if applied is not None else "?"
            shown_lag = f"{lag:,}" if lag is not None else "?"
            line = (
                f"events produced {self.produced:,}  applied {shown_applied}  "
                f"lag {shown_lag}  {now - self.started:.0f}s"
            )
            if self.tty:
                self.out.write("\r" + line + "\x1b[K")
                self.out.flush()
            elif now - last_plain >= PLAIN_EVERY:
                last_plain = now
                self.say(line)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), REFRESH)

    async def _watch_child(self) -> int:
        assert self.child is not None
        while not self.stop.is_set():
            code = self.child.poll()
            if code is not None:
                return code
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.2)
        return 0

    def _banner(
        self, bootstrap: str, keys: dict[str, str] | None, keys_file: Path, live: _Live | None
    ) -> None:
        say = self.say
        say("")
        say(
            "Campaign analytics demo: broker + projector + API"
            + (" + simulated campaigns" if self.simulate else "")
        )
        status, _ = _http_get(f"{self.base}/ui", 1.0)
        if status == 200 and live is not None:
            live_key = (keys or {}).get(live.workspace_id, "<your key>")
            say(f"  dashboard   {self.base}/ui/campaigns/{live.campaign_id}  (key {live_key})")
        elif status == 200:
            say(f"  dashboard   {self.base}/ui")
        say(f"  API docs    {self.base}/docs")
        say(f"  broker      {bootstrap} (embedded, in memory)")
        say(f"  database    {self.db}")
        say(f"  serve log   {self.serve_log}")
        if keys is not None:
            say(f"  API keys    {keys_file} (all scopes):")
            for ws, key in keys.items():
                say(f"                {key}  workspace {ws}")
        else:
            say(f"  API keys    {keys_file} (yours)")
        say("")
        key = (keys or {}).get(live.workspace_id if live else WORKSPACES[0], "<your key>")
        if live is not None:
            say(f'Live campaign "{live.name}" ({live.workspace_id}); its status moves as you poll:')
            say(f"  curl -H 'X-API-Key: {key}' {self.base}/v1/campaign/{live.campaign_id}/status")
            say(f"  (also /v1/campaign/{live.campaign_id}/analytics)")
        else:
            say("No simulated stream. Produce events to the broker, e.g.:")
            say(
                f"  projector simulate --bootstrap {bootstrap} "
                "--campaigns 3 --recipients 2000 --rate 500"
            )
            say("then read a campaign with:")
            say(f"  curl -H 'X-API-Key: {key}' {self.base}/v1/campaign/<campaign_id>/status")
            say(f"Readiness and metrics: curl {self.base}/readyz ; curl {self.base}/metrics")
        say("")
        say("Ctrl-C stops everything.")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        sim: asyncio.Task[None] | None = None
        progress: asyncio.Task[None] | None = None
        try:
            if self.port == 0:
                self.port = free_port(self.host)
            _check_port_free(self.host, self.port)
            self.dir.mkdir(parents=True, exist_ok=True)
            bootstrap = self._start_broker()
            if self.settings.api_keys is not None:
                keys_file, keys = Path(self.settings.api_keys), None
            else:
                keys_file = self.dir / "api_keys.json"
                keys = write_keys(keys_file)
            self._start_serve(bootstrap, keys_file)
            self.say(f"starting projector serve on {self.base} (log {self.serve_log}) ...")
            if not await self._wait_ready():
                return 0
            live = None
            events: Iterator[Timed] = iter(())
            if self.simulate:
                live, events = _peek_live(
                    generate_timed(self.campaigns, self.recipients, DEMO_SEED)
                )
            self._banner(bootstrap, keys, keys_file, live)
            self.started = time.monotonic()
            if self.simulate:
                sim = asyncio.create_task(self._simulate(bootstrap, events))
            progress = asyncio.create_task(self._progress())
            watch = asyncio.create_task(self._watch_child())
            while not self.stop.is_set():
                done, _ = await asyncio.wait(
                    [t for t in (sim, watch) if t is not None and not t.done()] or [watch],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if watch in done:
                    if self.stop.is_set():
                        break
                    raise DemoError(
                        f"projector serve exited with code {watch.result()}; "
                        f"log {self.serve_log}:\n{_tail(self.serve_log)}"
                    )
                if sim is not None and sim in done:
                    exc = sim.exception()
                    if exc is not None:
                        raise DemoError(f"the simulator stopped: {exc}") from exc
                    self._newline()
                    self.say(
                        f"simulated stream done: {self.produced:,} events produced; "
                        f"still serving, Ctrl-C to stop"
                    )
                    sim = None
            self._newline()
            self.say("stopping ...")
            return 0
        except DemoError as e:
            self._newline()
            print(f"projector demo: {e}", file=sys.stderr, flush=True)
            return 1
        finally:
            self.stop.set()
            for task in (sim, progress):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            await asyncio.to_thread(self._shutdown)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _newline(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()

    def _shutdown(self) -> None:
        """Serve child first (SIGTERM, SIGKILL after 10 s), then the broker; always reaps."""
        child, self.child = self.child, None
        if child is not None:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.terminate()
                try:
                    child.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    print(
                        f"projector demo: serve pid {child.pid} ignored SIGTERM for "
                        f"{STOP_TIMEOUT:.0f}s; killing it",
                        file=sys.stderr,
                        flush=True,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        child.kill()
                    child.wait()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
