"""Guarantee 4: a failing DuckDB write (disk full) loses nothing and advances no offset.

The fault is real, not a hook: the database lives on a 64 MB tmpfs mounted
for the test (root is needed; the test is skipped, saying so, where mount is
not permitted), and the test fills that filesystem with a filler file while
``projector serve`` is ingesting. DuckDB then fails every commit with
``No space left on device`` writing its WAL. While the disk is full:

* no offset moves (``/readyz`` watermark frozen): nothing is acked or stored
  past the last committed flush;
* the flush is retried with exponential backoff (``projector_flush_failures``
  grows, the gaps between failures grow);
* reads keep answering 200 from the last projections.

Deleting the filler clears the fault; the projector recovers by itself and
the database equals the fold of every event.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from projector.tools.simulate import generate
from tests.fixtures.processes import projector_env
from tests.reliability.helpers import Serve, campaign_owner, dump, fold_dicts, produce_sync, read_db


@pytest.fixture
def small_fs(tmp_path: Path):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}); needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(fs: Path) -> Path:
    """Fill ``fs`` to the last byte (unbuffered writes, halving on ENOSPC); returns the filler."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        size = 1 << 20
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError:
                size //= 2
    finally:
        os.close(fd)
    return filler


def test_disk_full_retries_with_backoff_and_recovers_without_loss(
    small_fs, bootstrap, topics_factory, procs, tmp_path
):
    topics = topics_factory()
    env = projector_env(bootstrap, topics, flush_max_events=300, flush_interval_ms=20)
    db = small_fs / "p.duckdb"
    events = list(generate(campaigns=3, recipients=250, seed=51))
    owner = campaign_owner(events)
    half = len(events) // 2
    serve = Serve(procs, env, db, tmp_path)
    serve.wait_listening()
    first = produce_sync(bootstrap, topics, events[:half], array_size=3)
    serve.wait_applied(first, 60)
    watermark = serve.readyz()[1]["watermark"]
    probe = next(iter(owner))
    before = serve.status(probe, owner[probe]).json()["data"]
    failures0 = serve.metric("projector_flush_failures_total")

    filler = fill(small_fs)
    assert os.statvfs(small_fs).f_bavail == 0
    second = produce_sync(bootstrap, topics, events[half:], array_size=3)

    # Watch the failures for a while: each one's time, and that nothing moves.
    seen: list[tuple[float, float]] = []
    t0 = time.monotonic()
    while len(seen) < 6:
        n = serve.metric("projector_flush_failures_total") - failures0
        if not seen or n > seen[-1][1]:
            seen.append((time.monotonic(), n))
        assert serve.readyz()[1]["watermark"] == watermark, (
            "an offset moved while the disk was full"
        )
        r = serve.status(probe, owner[probe])
        assert r.status_code == 200 and r.json()["data"] == before, r.text
        assert serve.alive() is None
        assert time.monotonic() - t0 < 40, f"flush failures seen: {seen}"
        time.sleep(0.05)
    failures = seen[-1][1]
    gaps = [b[0] - a[0] for a, b in zip(seen, seen[1:], strict=False)]
    # Exponential backoff (0.1 s doubling, capped at 5 s), as the log states it.
    # (Measured gaps add the failing commit's own, variable, duration.)
    delays = [float(d) for d in re.findall(r"flush failed, retrying in ([0-9.]+)s", serve.log())]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.8, 1.6], delays
    assert "No space left on device" in serve.log()

    filler.unlink()
    cleared = time.monotonic()
    serve.wait_applied(first + second, 60)
    recovered = time.monotonic() - cleared
    serve.stop()
    assert read_db(db) == dump(fold_dicts(events))
    print(
        f"\n{len(events)} events ({first + second} records); disk full for "
        f"{cleared - t0:.1f}s: {failures:.0f} failed flush commits (ENOSPC on the WAL), "
        f"gaps between retries {', '.join(f'{g:.2f}' for g in gaps)} s; "
        f"caught up {recovered:.1f}s after the space came back"
    )


pytestmark = pytest.mark.timeout(200)
