"""Summarise a ``py-spy record --format raw --threads`` file: top functions by share.

Each line of the raw format is ``frame;frame;...;leaf count`` (root first;
with ``--threads`` the root is the thread). Prints, over all samples, the
share of samples per thread, and the top functions by *inclusive* share (the
function is anywhere on the stack) and by *own* share (it is the leaf).

``python -m bench.profile_summary PROFILE.txt [--top 25] [--thread NAME]``
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LOC = re.compile(r"\s*\((.*?):\d+\)$")


def _name(frame: str) -> str:
    """'fn (path/to/mod.py:12)' -> 'fn (mod.py)'; line numbers merged."""
    m = _LOC.search(frame)
    if not m:
        return frame.strip()
    path = m.group(1)
    short = "/".join(path.split("/")[-2:])
    return f"{frame[:m.start()].strip()} ({short})"


def summarise(path: Path, top: int = 25, thread: str | None = None) -> str:
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        tname = frames[0]
        if thread and thread not in tname:
            continue
        threads[tname] += n
        total += n
        names = [_name(f) for f in frames[1:]]
        for name in set(names):
            inclusive[name] += n
        if names:
            own[names[-1]] += n
    if not total:
        return "no samples"
    out = [f"{total} samples ({path})", "", "by thread:"]
    out += [f"  {n / total:6.1%}  {t}" for t, n in threads.most_common(10)]
    out += ["", "inclusive (on the stack):"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    out += ["", "own (leaf):"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--thread")
    args = ap.parse_args()
    print(summarise(args.profile, args.top, args.thread))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
