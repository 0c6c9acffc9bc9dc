"""docs/architecture.md names, for the walk of one event, every file it crosses: they exist.

The walk is a table of (file, function) rows; each file must exist and define
the function (``Class.method`` for a method). A renamed or moved piece then
fails here until the map is updated, so a newcomer's map matches the code.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| *\d+ *\| *`([^`]+\.py)` *\| *`([\w.]+)` *\|", re.M)


def walk() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## The walk of one event", 1)[1].split("\n## ", 1)[0]
    return ROW.findall(section)


def test_the_walk_names_enough_steps() -> None:
    steps = walk()
    assert len(steps) >= 15, steps
    layers = {path.split("/")[0] if not path.startswith("projector/") else path.split("/")[1]
              for path, _ in steps}  # fmt: skip
    assert {"schemas", "intake", "store", "fold", "api"} <= layers, layers


def test_every_file_and_function_of_the_walk_exists() -> None:
    for path, name in walk():
        assert (ROOT / path).is_file(), path
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        target = module
        for part in name.split("."):
            assert hasattr(target, part), f"{path} defines no {name}"
            target = getattr(target, part)
        assert callable(target), f"{path}: {name} is not a function"
