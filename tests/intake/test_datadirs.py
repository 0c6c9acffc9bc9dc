"""faust data dirs of killed workers do not pile up in the temp folder."""

from __future__ import annotations

import os
import subprocess
import sys

from projector.intake.worker import DATADIR_PREFIX, sweep_datadirs


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_dirs_of_gone_processes_are_removed_and_no_other(tmp_path):
    dead = tmp_path / f"{DATADIR_PREFIX}{_dead_pid()}-abc123"
    (dead / "v1").mkdir(parents=True)
    mine = tmp_path / f"{DATADIR_PREFIX}{os.getpid()}-def456"
    mine.mkdir()
    old_style = tmp_path / f"{DATADIR_PREFIX}18mcgyrd"  # no pid: not ours to judge
    old_style.mkdir()
    other = tmp_path / "something-else-1-2"
    other.mkdir()
    assert sweep_datadirs(str(tmp_path)) == [str(dead)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [mine.name, old_style.name, other.name]
    )
