"""Every long-running entry point settles CPython before its stream, as runtime says it should.

``projector worker`` and ``projector serve``, and the benchmarks' projector
and writer children (which must run as ``projector worker`` does), are
started for real; each logs what ``projector.intake.runtime.settle`` left
the interpreter with, read back from it. The worker and the children shorten
the GIL switch interval to the worker's by default, ``serve`` keeps
CPython's unless told; ``PROJECTOR_GIL_SWITCH_INTERVAL_MS`` tells them all.
All freeze what exists and space full collections. (The settle rules
themselves: tests/intake/test_runtime.py.)
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from projector.intake import runtime
from projector.settings import Topics
from projector.tools.broker import free_port
from tests.fixtures.processes import Procs, keys_file, projector_env, tail
from tests.fixtures.waiting import wait_until

SETTLED = re.compile(
    r"runtime settled: (?P<frozen>\d+) objects frozen, collection thresholds "
    r"\((?P<young>\d+), (?P<middle>\d+), (?P<full>\d+)\), GIL switch interval (?P<ms>[\d.e-]+) ms"
)
CPYTHON_SWITCH_INTERVAL_MS = 5.0  # sys.getswitchinterval() of a fresh interpreter
GIVEN_MS = 0.5
# The interval each entry point settles at when PROJECTOR_GIL_SWITCH_INTERVAL_MS is unset.
BY_DEFAULT = {
    "worker": runtime.WORKER_SWITCH_INTERVAL_MS,
    "serve": CPYTHON_SWITCH_INTERVAL_MS,
    "projector child": runtime.WORKER_SWITCH_INTERVAL_MS,
    "writer child": runtime.WORKER_SWITCH_INTERVAL_MS,
}


def _start_all(
    procs: Procs, env: dict[str, str], tmp: Path, tag: str
) -> dict[str, subprocess.Popen[bytes]]:
    """Each entry point as an operator or the benchmarks start it."""
    (tmp / "target.json").write_text("[]")
    return {
        "worker": procs.start(
            "worker", "--db", str(tmp / f"worker-{tag}.duckdb"), env=env, log_name=f"worker-{tag}"
        ),
        "serve": procs.start(
            "serve", "--db", str(tmp / f"serve-{tag}.duckdb"), "--port", str(free_port()),
            "--api-keys", str(tmp / "keys.json"), env=env, log_name=f"serve-{tag}",
        ),
        "projector child": procs.start(
            "--target", str(tmp / "target.json"), "--out", str(tmp / f"pc-{tag}.json"),
            env={**env, "PROJECTOR_DB": str(tmp / f"child-{tag}.duckdb")},
            log_name=f"projector-child-{tag}", module="bench._projector_child",
        ),
        "writer child": procs.start(
            "--events", "10", "--batch", "10", "--cycles", "1",
            "--out", str(tmp / f"wc-{tag}.json"),
            env=env, log_name=f"writer-child-{tag}", module="bench._writer_child",
        ),
    }  # fmt: skip


def _settled(proc: subprocess.Popen[bytes]) -> re.Match[str] | None:
    return SETTLED.search(Path(proc.log_path).read_text(errors="replace"))  # type: ignore[attr-defined]


@pytest.mark.timeout(240)
def test_worker_and_serve_settle_before_the_stream(
    bootstrap: str, topics_factory: Callable[..., Topics], procs: Procs, tmp_path: Path
) -> None:
    topics = topics_factory(partitions=1)
    default = projector_env(bootstrap, topics)
    default.pop("PROJECTOR_GIL_SWITCH_INTERVAL_MS", None)
    given = {**default, "PROJECTOR_GIL_SWITCH_INTERVAL_MS": str(GIVEN_MS)}
    keys_file(tmp_path / "keys.json")
    # All eight at once: each start costs seconds of imports.
    runs = [
        (expect, name, proc)
        for env, tag, expect in ((default, "default", None), (given, "given", GIVEN_MS))
        for name, proc in _start_all(procs, env, tmp_path, tag).items()
    ]
    for expect, name, proc in runs:

        def died(proc: subprocess.Popen[bytes] = proc) -> str | None:
            if proc.poll() is None or _settled(proc):
                return None
            return f"it exited {proc.returncode} without settling:\n{tail(proc)}"

        what = f"{name} ({'PROJECTOR_GIL_SWITCH_INTERVAL_MS=' if expect else 'by default'}" \
               f"{expect or ''}) to settle"  # fmt: skip
        line = wait_until(what, lambda proc=proc: _settled(proc), 120, died)
        if proc.poll() is None:
            proc.kill()
        said = line.group(0)
        assert float(line["ms"]) == pytest.approx(expect or BY_DEFAULT[name]), (name, said)
        assert int(line["frozen"]) > 0, (name, said)
        assert int(line["full"]) == runtime.FULL_COLLECTION_EVERY, (name, said)
