"""The contract's golden example, loaded once for every test that needs it."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from schemas import EVENT_ADAPTER

CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "contract"
GOLDEN = CONTRACT / "examples" / "basic"


def shared_path() -> Path:
    return CONTRACT


@cache
def golden_lines() -> tuple[str, ...]:
    return tuple(line for line in (GOLDEN / "events.jsonl").read_text().splitlines() if line.strip())


def golden_events() -> list[Any]:
    return [EVENT_ADAPTER.validate_json(line) for line in golden_lines()]


@cache
def golden_expected() -> dict[str, Any]:
    return json.loads((GOLDEN / "expected.json").read_text())
