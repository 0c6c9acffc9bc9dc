"""Typed configuration, loaded once at the entrypoint and passed down.

Every option can come from the command line or from a ``PROJECTOR_*``
environment variable (the CLI only overrides what the user typed), so the same
settings drive a laptop demo, CI and the compose deployment.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Topics(BaseSettings):
    """Topic names of contract v1; configurable for shared clusters."""

    model_config = SettingsConfigDict(env_prefix="PROJECTOR_TOPIC_", frozen=True)

    runs: str = "campaign.runs"
    batches: str = "campaign.batches"
    submits: str = "campaign.submits"
    dlrs: str = "campaign.dlrs"
    deadletter: str = "campaign.deadletter"

    @property
    def sources(self) -> tuple[str, str, str, str]:
        """The four topics the projector consumes, in contract order."""
        return (self.runs, self.batches, self.submits, self.dlrs)

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.sources, self.deadletter)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROJECTOR_", frozen=True, extra="ignore")

    bootstrap: str = "127.0.0.1:9092"
    db: Path = Path("var/projector.duckdb")
    # A store per partition in this directory instead of the one ``db`` file
    # (projector.store.shards): what lets a partition move between nodes alone,
    # by reopening its file when the directory is shared. None: ``db``.
    data_dir: Path | None = None
    api_keys: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    partitions: int = Field(default=4, ge=1, le=1024)
    topics: Topics = Field(default_factory=Topics)
    # Consumer group of the faust worker. Offsets live in DuckDB; the group
    # only spreads partitions and keeps Kafka-side commits as a convenience.
    group_id: str = "campaign-projector"
    # The base URL other nodes of the group reach this one's API at; faust
    # hands it to the group leader, whose assignment tells every member which
    # URL owns which partition (projector.intake.membership). None: the bind
    # address and the port as actually bound (``advertised_url``). Nodes of
    # one group must advertise distinct URLs.
    advertise: str | None = Field(default=None, pattern=r"^https?://[^/\s]+/?$")
    # Micro-batch bounds: a flush happens when either is reached. Under steady
    # load the interval triggers; the size bound only matters while catching
    # up on a backlog, where larger flushes spread each flush's fixed cost, at
    # the price of memory (docs/decisions/0023-flush-bound-100000.md; the
    # interval: docs/decisions/0024-flush-interval-alternatives.md). A flush
    # starts at the bound and the batch filling meanwhile may reach twice it
    # before the consumer waits.
    flush_max_events: int = Field(default=100000, ge=1)
    flush_interval_ms: int = Field(default=100, ge=1)
    # How long the broker may hold a fetch when it has too little data. faust
    # hard-codes 1500 ms, and Tansu holds a fetch for that long even while
    # records arrive, so records reached the projector late
    # (docs/decisions/0001-fetch-wait-100ms.md).
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=30000)
    # How often the worker reads the log ends and starts (lag, readiness, the
    # stall watchdog) and reads every stored log mark back. Commits do not wait
    # for it: they read marks back themselves after an assignment or a
    # reconnection (docs/decisions/0034-log-marks-once-per-epoch.md).
    log_poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    # DuckDB's memory limit, applied at connect time (WAL replay runs before any SET).
    duckdb_memory_limit: str = "2GB"
    # The write-ahead log size at which a commit checkpoints the database.
    # A checkpoint rewrites the tables' indexes, so its cost grows with the
    # database; at DuckDB's 16 MB nearly every large flush paid one. The
    # price of a larger threshold: up to this much WAL on disk, replayed on
    # the next start after a crash (docs/decisions/0018-checkpoint-threshold-256mb.md).
    duckdb_checkpoint_threshold: str = Field(default="256MB", pattern=r"^\d+(\.\d+)?\s*[KMGT]?i?B$")
    # DuckDB's worker threads for the live database (worker, serve); 0 = one
    # per core, DuckDB's default. At live rates a flush is small and gains
    # nothing from a second thread, while DuckDB's pool taking both cores of a
    # small machine starves the API and faust's loop of CPU
    # (docs/decisions/0013-one-duckdb-thread.md). Rebuilds always use every
    # core; a flush merged in SQL runs on two (projector.store.writer.MERGE_THREADS:
    # docs/decisions/0017-merge-on-two-duckdb-threads.md).
    duckdb_threads: int = Field(default=1, ge=0)
    # How long a thread waits for the GIL before it asks the holder to let go;
    # None: the command's default (projector.intake.runtime): 1 ms for `worker`,
    # CPython's 5 ms for `serve`. The writer's DuckDB statements take the GIL
    # back after every task, so beside a busy consumer loop each flush paid
    # that wait hundreds of times. In `serve` a shorter interval also preempts
    # the API's thread (docs/decisions/0025-gil-switch-interval.md).
    gil_switch_interval_ms: float | None = Field(default=None, gt=0, le=100)
    # Rows of the projection tables the live writer keeps in memory, so a
    # flush reads from DuckDB only the keys it has not seen. Past the bound
    # the cache is dropped whole and refilled from misses. Memory grows with
    # the bound (docs/decisions/0005-row-cache.md).
    cache_max_rows: int = Field(default=1_000_000, ge=0)
    # Flushes of at least this many events are folded by set-based SQL
    # (projector.store.setmerge), which runs in DuckDB without the GIL, instead of
    # event by event in Python; 0 = never. Only a backlog makes such flushes.
    merge_min_events: int = Field(default=10_000, ge=0)
    # After every flush, compare the campaign heads and runs kept in memory
    # (what status and analytics are answered from) with DuckDB for each
    # campaign the flush touched; a difference stops the process
    # (projector.store.invariants). On in the test suite's servers; off in
    # production, where it costs a query per flush (docs/reliability.md).
    check_invariants: bool = False
    log_level: str = "INFO"
    # Receipts that never come: a sent recipient still without a terminal
    # delivery report this long after its send counts as receipt_overdue. The
    # clock is the campaign's own latest event time, not the wall clock, so
    # answers stay a function of the events (docs/decisions/0036-receipt-window-
    # on-event-time.md). `72h`, `90m`, `3d`, plain seconds, or ISO 8601 (PT72H).
    receipt_window: timedelta = Field(default=timedelta(hours=72), gt=timedelta(0))
    # API protection: requests/s and burst per key, and per client address for
    # requests without a valid key; 0 turns rate limiting off.
    rate_limit: float = Field(default=50.0, ge=0)
    rate_burst: int = Field(default=100, ge=1)
    anon_rate_limit: float = Field(default=20.0, ge=0)
    anon_rate_burst: int = Field(default=100, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1)
    # The key `projector swap` sends to a running serve: it must hold the
    # `admin` scope there. A client's setting; the server reads its keys file.
    admin_key: SecretStr | None = None

    @field_validator("receipt_window", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        """``72h``, ``90m``, ``3d``, ``30s`` or plain seconds; anything else as pydantic
        reads a timedelta (ISO 8601: ``PT72H``)."""
        if isinstance(value, str):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
            if m:
                unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
                return timedelta(seconds=float(m.group(1)) * unit)
        return value

    def advertised_url(self, port: int | None = None) -> str:
        """This node's base URL for the group: ``advertise``, else ``http://host:port``.

        ``port`` is the port as actually bound (``--port 0`` binds a free one).
        A wildcard bind address is no address to reach: the host name stands in.
        """
        if self.advertise is not None:
            return self.advertise.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - compared, not bound
            import socket

            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port if port is None else port}"
