"""Schemathesis over the OpenAPI document: every operation, generated requests, any key.

Each operation of the served document (so operations added later are fuzzed
too) gets generated path, query and header values; half the cases use the
ids of seeded campaigns and runs so the data paths (200 with real payloads)
are reached, not only 404s. The key is drawn among full, partial, scope-less,
foreign and unknown keys, or none. Every response must be no server error and
conform to the document: status code documented, body on the documented
schema, content type and headers as declared.

The default suite runs ``FAST_EXAMPLES`` per operation; ``make soak`` runs
the slow variant with ``SOAK_EXAMPLES`` per operation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.readstore import ReadStore
from api.server import read_only_status
from projector.intake.metrics import Metrics
from tests.api.test_security import INVALID_KEYS, KEY, KEYRING, OPEN_LIMITS, TARGETS

FAST_EXAMPLES = 50
SOAK_EXAMPLES = 200

KEYS = [*KEY.values(), *INVALID_KEYS, None]


@pytest.fixture(scope="module")
def fuzz_reader(db_file: Path) -> Iterator[ReadStore]:
    r = ReadStore.open_file(db_file)
    yield r
    r.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_reader: ReadStore) -> Any:
    snapshot = read_only_status(fuzz_reader)
    # Limits off: a 429 is the limiter working, not a schema violation (tested elsewhere).
    app = create_app(fuzz_reader, keys=KEYRING, status=lambda: snapshot, metrics=Metrics(),
                     limits=OPEN_LIMITS)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _operations(api_schema: Any) -> list[Any]:
    ops = [r.ok() for r in api_schema.get_all_operations()]
    assert len(ops) >= 8
    return ops


def fuzz_operation(operation: Any, examples: int) -> int:
    """Run ``examples`` generated cases against one operation; returns how many ran."""
    ran = 0

    @given(
        case=operation.as_strategy(),
        key=st.sampled_from(KEYS),
        target=st.none() | st.sampled_from(TARGETS),
    )
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any, key: str | None, target: Any) -> None:
        nonlocal ran
        params = case.path_parameters or {}
        if target is not None:  # a real campaign and run: reach the 200 payloads
            if "campaign_id" in params:
                params["campaign_id"] = target.campaign_id
            if "run_id" in params:
                params["run_id"] = target.run_id
        headers = {"X-API-Key": key} if key is not None else {}
        case.call_and_validate(
            headers=headers,
            # A generated id is mostly unknown (404) or the key lacks a scope (403):
            # "valid data must be accepted" does not hold for ids.
            excluded_checks=[schemathesis.checks.positive_data_acceptance],
        )
        ran += 1

    check()
    return ran


def _fuzz_all(api_schema: Any, examples: int) -> None:
    report = []
    for op in _operations(api_schema):
        start = time.perf_counter()
        ran = fuzz_operation(op, examples)
        report.append(f"{op.method.upper()} {op.path}: {ran} cases "
                      f"in {time.perf_counter() - start:.1f} s")
        assert ran >= min(examples, 10), report[-1]
    print("\n".join(report))


def test_fuzz_every_operation(api_schema):
    _fuzz_all(api_schema, FAST_EXAMPLES)


@pytest.mark.slow
def test_fuzz_every_operation_soak(api_schema):
    _fuzz_all(api_schema, SOAK_EXAMPLES)
