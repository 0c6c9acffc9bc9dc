"""F11: a recipient named only by its submit is listed under its winning submit's batch.

Batch 1 names r5 and r7; batch 2 names nobody; r1 is named only by a submit in
batch 2, r3 only by a submit in batch 9, whose ``batch.created`` never comes.
F11 lists batch 1's recipients, then r1 (it takes batch 2's sequence), then r3
(no sequence yet: last), in run detail, in the paged recipients and in the CSV
export, and in the fold's own ``views.listed_recipients``, whether batch 2's
``batch.created`` arrives before or after r1's submit.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyRing
from api.payloads import campaign as views
from api.readstore import ReadStore
from projector.fold.state import State
from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.store.writer import Store
from schemas import BatchCreated, BatchRecipient, MessageSubmitted, RunScheduled
from tests.api.conftest import ALPHA_ALL, KEYS_DOC, EventFactory

CID, RUN = "c-f11", "run-f11"
RUN_KEY = ("ws_alpha", CID, RUN)


def _events() -> tuple[list[Any], Any, list[Any]]:
    """(what comes first, batch 2's batch.created, the submits)."""
    ev = EventFactory()

    def created(seq: int, ids: list[str]) -> Any:
        members = [BatchRecipient(recipient_id=i, phone_number="2557") for i in ids]
        return ev(BatchCreated, campaign_id=CID, run_id=RUN, batch_id=f"b{seq}",
                  batch_sequence=seq, recipients=members)  # fmt: skip

    def submit(rid: str, batch: str) -> Any:
        return ev(MessageSubmitted, campaign_id=CID, run_id=RUN, batch_id=batch, recipient_id=rid,
                  phone_number="2557", outcome="sent", message_id=f"m-{rid}")  # fmt: skip

    first = [ev(RunScheduled, campaign_id=CID, run_id=RUN, scheduled_at=ev._t, recipient_count=4),
             created(1, ["r7", "r5"])]  # fmt: skip
    return first, created(2, []), [submit("r1", "b2"), submit("r3", "b9"), submit("r5", "b1")]


def _listed(client: TestClient) -> dict[str, list[tuple[str, Any]]]:
    """(recipient_id, batch_sequence) in the order each endpoint lists them."""
    h = {"X-API-Key": ALPHA_ALL}
    base = f"/v1/campaign/{CID}/runs/{RUN}"
    detail = client.get(base, headers=h).json()["data"]["recipients"]
    paged = client.get(f"{base}/recipients?limit=2", headers=h).json()
    rest = client.get(f"{base}/recipients?limit=2&offset=2", headers=h).json()
    rows = list(csv.DictReader(io.StringIO(
        client.get(f"{base}/recipients", headers={**h, "Accept": "text/csv"}).text)))  # fmt: skip
    return {
        "detail": [(r["recipient_id"], None) for r in detail],
        "paged": [(r["recipient_id"], r["batch_sequence"]) for r in paged["data"] + rest["data"]],
        "csv": [(r["recipient_id"], int(r["batch_sequence"]) if r["batch_sequence"] else None)
                for r in rows],  # fmt: skip
    }


@pytest.mark.parametrize("batch_created", ["before the submits", "after the submits"])
def test_a_recipient_named_only_by_its_submit_takes_its_batchs_place(tmp_path, batch_created):
    first, batch2, submits = _events()
    order = [*first, batch2, *submits] if batch_created == "before the submits" else [
        *first, *submits, batch2]  # fmt: skip
    want = [("r5", 1), ("r7", 1), ("r1", 2), ("r3", None)]

    state = State()
    for ev in order:
        state.apply([ev])
    listed = views.listed_recipients(state.recipients_of(RUN_KEY), state.batches_of(RUN_KEY))
    assert [(r.recipient_id, r.batch_sequence) for r in listed] == want

    with Store(tmp_path / "f11.duckdb") as store:
        for ev in order:  # one flush each: the batch's sequence reaches r1 on read, not on write
            store.flush([ev], {})
        status = PipelineStatus(ready=True, offsets={}, flush_seq=store.seq)
        app = create_app(ReadStore(store.cursor), keys=KeyRing.from_dict(KEYS_DOC),
                         status=status.snapshot, metrics=Metrics())  # fmt: skip
        with TestClient(app) as client:
            got = _listed(client)
    assert [rid for rid, _ in got["detail"]] == [rid for rid, _ in want]
    assert got["paged"] == want
    assert got["csv"] == want
