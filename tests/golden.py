"""The contract's golden example, loaded once for every test that needs it.

The shared contract beside the repository is the authority; the copy in
tests/data/golden keeps the suite runnable from a lone clone, and
test_golden_copy_matches_the_shared_contract catches drift between them.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from schemas import EVENT_ADAPTER

SHARED_GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "contract" / "examples" / "basic"
LOCAL_GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
GOLDEN = SHARED_GOLDEN if (SHARED_GOLDEN / "expected.json").exists() else LOCAL_GOLDEN


@cache
def golden_lines() -> tuple[str, ...]:
    return tuple(
        line for line in (GOLDEN / "events.jsonl").read_text().splitlines() if line.strip()
    )


def golden_events() -> list[Any]:
    return [EVENT_ADAPTER.validate_json(line) for line in golden_lines()]


@cache
def golden_expected() -> dict[str, Any]:
    return json.loads((GOLDEN / "expected.json").read_text())
