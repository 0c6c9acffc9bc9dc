"""API fixtures: a real DuckDB file seeded through ``Store.flush``, keys, app factory."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyRing
from api.readstore import ReadStore
from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.store.writer import Store
from schemas import (
    BatchCompleted,
    BatchCreated,
    BatchRecipient,
    BatchStarted,
    CampaignDefined,
    MessageDlr,
    MessageSubmitted,
    RunClaimed,
    RunScheduled,
)
from tests.fixtures.golden import golden_events

# Keys by role. ws_alpha and ws_beta own the golden campaigns.
ALPHA_ALL = "alpha-all-0123456789"
ALPHA_CAMPAIGNS = "alpha-campaigns-only-01"
ALPHA_ANALYTICS = "alpha-analytics-only-01"
BETA_ALL = "beta-all-0123456789"
BETA_NO_PII = "beta-no-pii-0123456789"
GAMMA_ALL = "gamma-all-0123456789"  # a workspace that owns nothing
ALL_SCOPES = ["campaigns:read", "analytics:read", "pii:read"]

KEYS_DOC = {
    "keys": [
        {"key": ALPHA_ALL, "workspace_id": "ws_alpha", "scopes": ALL_SCOPES},
        {"key": ALPHA_CAMPAIGNS, "workspace_id": "ws_alpha", "scopes": ["campaigns:read"]},
        {"key": ALPHA_ANALYTICS, "workspace_id": "ws_alpha", "scopes": ["analytics:read"]},
        # Given as a digest, as an operator would deploy it.
        {
            "key_sha256": hashlib.sha256(BETA_ALL.encode()).hexdigest(),
            "workspace_id": "ws_beta",
            "scopes": ALL_SCOPES,
        },
        {
            "key": BETA_NO_PII,
            "workspace_id": "ws_beta",
            "scopes": ["campaigns:read", "analytics:read"],
        },
        {"key": GAMMA_ALL, "workspace_id": "ws_gamma", "scopes": ALL_SCOPES},
    ]
}

NO_RUN_CID = "c0000000-0000-4000-8000-00000000a001"
BIG_CID = "c0000000-0000-4000-8000-00000000b001"
BIG_RUN = "run_big_600"
BIG_RECIPIENTS = 600
OFFSETS = {("campaign.runs", 0): 40, ("campaign.batches", 0): 90, ("campaign.submits", 1): 77}


class EventFactory:
    """Contract events with unique ids and increasing times (keyword defaults)."""

    def __init__(self, start: datetime = datetime(2026, 5, 12, 8, 0, tzinfo=UTC)) -> None:
        self._ids = itertools.count(1)
        self._t = start

    def __call__(self, model: type, *, campaign_id: str, workspace_id: str = "ws_alpha",
                 **fields: Any) -> Any:
        self._t += timedelta(milliseconds=250)
        fields.setdefault("occurred_at", self._t)
        return model(
            event_id=f"ev-{next(self._ids):06d}",
            campaign_id=campaign_id,
            workspace_id=workspace_id,
            **fields,
        )


def extra_events() -> list[Any]:
    """A campaign with no run, and one run of 600 recipients (over the 500 cap)."""
    ev = EventFactory()
    out: list[Any] = [
        ev(CampaignDefined, campaign_id=NO_RUN_CID, name="Never run", channel="SMS",
           provider="mock"),
        ev(CampaignDefined, campaign_id=BIG_CID, name="Big", channel="SMS", provider="mock"),
        ev(RunScheduled, campaign_id=BIG_CID, run_id=BIG_RUN,
           scheduled_at=datetime(2026, 5, 12, 8, 0, tzinfo=UTC),
           recipient_count=BIG_RECIPIENTS, batch_size=300),
        ev(RunClaimed, campaign_id=BIG_CID, run_id=BIG_RUN),
    ]
    # Batch 1 holds the larger ids, so F11's order (batch, then id) differs from id order.
    batches = {1: range(300, 600), 2: range(0, 300)}
    for seq, ids in batches.items():
        out.append(ev(BatchCreated, campaign_id=BIG_CID, run_id=BIG_RUN, batch_id=f"b{seq}",
                      batch_sequence=seq,
                      recipients=[BatchRecipient(recipient_id=f"r{i:04d}",
                                                 phone_number=f"2557{i:08d}") for i in ids]))
        out.append(ev(BatchStarted, campaign_id=BIG_CID, run_id=BIG_RUN, batch_id=f"b{seq}"))
    out.append(ev(BatchCompleted, campaign_id=BIG_CID, run_id=BIG_RUN, batch_id="b1"))
    for n, i in enumerate(range(300, 420)):
        outcome = "sent" if n < 100 else ("failed" if n < 110 else "skipped")
        out.append(ev(MessageSubmitted, campaign_id=BIG_CID, run_id=BIG_RUN, batch_id="b1",
                      recipient_id=f"r{i:04d}", phone_number=f"2557{i:08d}", outcome=outcome,
                      message_id=f"m{i:04d}" if outcome == "sent" else None))
        if outcome == "sent" and n < 65:
            out.append(ev(MessageDlr, campaign_id=BIG_CID, run_id=BIG_RUN,
                          message_id=f"m{i:04d}", status="delivered" if n < 60 else "expired"))
    # A submit in batch 2 (sequence 2) for one recipient: still ordered by batch.
    out.append(ev(MessageSubmitted, campaign_id=BIG_CID, run_id=BIG_RUN, batch_id="b2",
                  recipient_id="r0000", phone_number="255700000000", outcome="sent",
                  message_id="m0000"))
    return out


def all_events() -> list[Any]:
    return golden_events() + extra_events()


def seed(store: Store, events: list[Any]) -> None:
    """Several flushes, so campaigns end at different positions."""
    step = 40
    chunks = [events[i : i + step] for i in range(0, len(events), step)]
    for n, chunk in enumerate(chunks):
        offsets = OFFSETS if n == len(chunks) - 1 else {("campaign.runs", 0): n}
        store.flush(chunk, offsets)


@pytest.fixture(scope="session")
def db_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "projector.duckdb"
    with Store(path) as store:
        seed(store, all_events())
    return path


@pytest.fixture(scope="session")
def reader(db_file: Path) -> Iterator[ReadStore]:
    r = ReadStore.open_file(db_file)
    yield r
    r.close()


@pytest.fixture(scope="session")
def keys() -> KeyRing:
    return KeyRing.from_dict(KEYS_DOC)


@pytest.fixture
def pipeline(reader: ReadStore) -> PipelineStatus:
    """Mutable pipeline status; the app reads its snapshots."""
    return PipelineStatus(
        mode="live", ready=True, offsets=reader.offsets(), flush_seq=reader.flush_seq()
    )


@pytest.fixture
def make_client(
    reader: ReadStore, keys: KeyRing, pipeline: PipelineStatus
) -> Iterator[Callable[..., TestClient]]:
    """Factory: ``make(reader=..., status=..., metrics=..., owners=...) -> TestClient``."""
    clients: list[TestClient] = []

    def make(
        reader: ReadStore = reader,
        status: Callable[[], Any] = pipeline.snapshot,
        metrics: Metrics | None = None,
        owners: Any | None = None,
    ) -> TestClient:
        app = create_app(
            reader, keys=keys, status=status, metrics=metrics or Metrics(), owners=owners
        )
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def get(client: TestClient, path: str, key: str | None = ALPHA_ALL, **headers: str) -> Any:
    h = dict(headers)
    if key is not None:
        h["X-API-Key"] = key
    return client.get(path, headers=h)
