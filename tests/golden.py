"""The contract's golden examples, loaded once for every test that needs them.

``basic`` (four campaigns) and ``tenancy`` (three campaigns in two workspaces
that reuse run, batch, recipient and message ids: F12). The shared contract
beside the repository is the authority; the copies in tests/data/golden keep
the suite runnable from a lone clone, and test_golden_copies_match_the_shared_contract
catches drift between them.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from schemas import EVENT_ADAPTER

EXAMPLES = ("basic", "tenancy")
SHARED_EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "contract" / "examples"
LOCAL_EXAMPLES = Path(__file__).resolve().parent / "data" / "golden"


def example_dir(name: str = "basic") -> Path:
    shared = SHARED_EXAMPLES / name
    return shared if (shared / "expected.json").exists() else LOCAL_EXAMPLES / name


@cache
def golden_lines(name: str = "basic") -> tuple[str, ...]:
    text = (example_dir(name) / "events.jsonl").read_text()
    return tuple(line for line in text.splitlines() if line.strip())


def golden_events(name: str = "basic") -> list[Any]:
    return [EVENT_ADAPTER.validate_json(line) for line in golden_lines(name)]


@cache
def golden_expected(name: str = "basic") -> dict[str, Any]:
    """Per campaign id: its ``workspace_id``, ``status``, ``analytics`` and ``runs``."""
    return json.loads((example_dir(name) / "expected.json").read_text())
