"""Start ``projector serve`` as a child for the HTTP benchmarks (freshness, status_latency)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import common
from projector.settings import Topics
from projector.tools.broker import free_port


@dataclass
class Served:
    url: str
    client_keys: dict[str, list[str]]  # workspace -> one key per client
    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def keys(self) -> dict[str, str]:
        """workspace -> one key (the first client's)."""
        return {ws: ks[0] for ws, ks in self.client_keys.items()}


@contextmanager
def serve(bootstrap: str, topics: Topics, name: str, profile: bool = False,
          clients: int = 1, shards: bool = False, db: Path | None = None,
          **settings: object) -> Iterator[Served]:
    """``shards``: a store per partition (``--data-dir``) instead of one file; ``db``: serve
    this (prebuilt) file; ``settings``: more ``PROJECTOR_*`` settings, by field name."""
    work = common.workdir(name)
    client_keys = common.write_keys(work / "keys.json", clients)
    port = free_port()
    store = {"data_dir": work / "shards"} if shards else {"db": db or work / "serve.duckdb"}
    env = common.child_env(bootstrap, topics, **store, **settings,
                           api_keys=work / "keys.json", host="127.0.0.1", port=port)
    p = common.start_child(["-m", "service", "serve"], env=env, workdir=work, log_name="serve",
                           profile=work / "profile.txt" if profile else None)
    url = f"http://127.0.0.1:{port}"
    try:
        common.wait_http(url + "/healthz", timeout=60, proc=p)
        yield Served(url, client_keys, p, work)
    finally:
        crashed = p.poll() is not None
        code = common.stop_child(p)
        if crashed:
            print(f"  note: projector serve died during the run (exit {code}); "
                  f"log {p.log_path}")  # type: ignore[attr-defined]
        elif code not in (0, None, -15):
            print(f"  note: projector serve exited {code}; log {p.log_path}")  # type: ignore[attr-defined]
