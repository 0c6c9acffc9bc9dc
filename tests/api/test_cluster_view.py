"""The cluster view and this node's share in /readyz, over a ``Membership`` as serve passes it."""

from __future__ import annotations

from projector.intake.membership import Membership
from projector.settings import Topics

SOURCES = Topics().sources
ME, OTHER = "http://10.0.0.1:8000", "http://10.0.0.2:8000"


def _membership(settled: bool = True) -> Membership:
    m = Membership(ME, 4, SOURCES)
    m.assigned(
        {ME: {t: [0, 2] for t in SOURCES}, OTHER: {t: [1, 3] for t in SOURCES}},
        {(t, p) for t in SOURCES for p in (0, 2)},
    )
    if not settled:
        m.revoked()
    return m


def test_the_cluster_view_names_every_owner(make_client):
    client = make_client(owners=_membership())
    body = client.get("/v1/cluster").json()  # no key: as open as /metrics
    assert body["data"] == {
        "url": ME,
        "partitions": 4,
        "settled": True,
        "owners": {"0": ME, "1": OTHER, "2": ME, "3": OTHER},
    }


def test_while_rebalancing_no_owner_is_named(make_client):
    body = make_client(owners=_membership(settled=False)).get("/v1/cluster").json()
    assert body["data"]["settled"] is False
    assert body["data"]["owners"] == dict.fromkeys(("0", "1", "2", "3"))


def test_a_single_node_owns_everything(client):
    data = client.get("/v1/cluster").json()["data"]
    assert data == {"url": None, "partitions": None, "settled": True, "owners": {}}
    assert "cluster" not in client.get("/readyz").json()["data"]


def test_readyz_shows_owned_partitions_and_their_lag(make_client, pipeline):
    pipeline.update(
        offsets={(SOURCES[0], 0): 10, (SOURCES[1], 0): 5, (SOURCES[0], 2): 7},
        log_end={(SOURCES[0], 0): 12, (SOURCES[1], 0): 8, (SOURCES[0], 2): 7},
    )
    data = make_client(owners=_membership()).get("/readyz").json()["data"]
    assert data["cluster"] == {
        "url": ME,
        "settled": True,
        "owned": [0, 2],
        "restoring": [],
        "restore_remaining": {},
        "lag": {"0": 5, "2": 0},
        "lease_lost": None,
    }


def test_readyz_and_metrics_show_a_lost_lease(make_client):
    from projector.intake.metrics import Metrics

    now = [100.0]
    metrics = Metrics()
    m = Membership(ME, 4, SOURCES, metrics=metrics, lease_seconds=5.0, clock=lambda: now[0])
    m.tick()
    m.assigned(
        {ME: {t: [0, 2] for t in SOURCES}, OTHER: {t: [1, 3] for t in SOURCES}},
        {(t, p) for t in SOURCES for p in (0, 2)},
    )
    client = make_client(owners=m, metrics=metrics)
    now[0] += 9.0  # SIGSTOP ... SIGCONT
    cluster = client.get("/readyz").json()["data"]["cluster"]
    assert cluster["settled"] is False and cluster["owned"] == []
    assert cluster["lease_lost"].startswith("lease lost: paused 9.0s")
    assert client.get("/v1/cluster").json()["data"]["settled"] is False
    assert "projector_lease_lost_total 1.0" in client.get("/metrics").text


def test_metrics_show_ownership(make_client):
    from projector.intake.metrics import Metrics

    metrics = Metrics()
    m = Membership(ME, 2, SOURCES, metrics=metrics)
    m.assigned(
        {ME: {t: [1] for t in SOURCES}, OTHER: {t: [0] for t in SOURCES}}, {(t, 1) for t in SOURCES}
    )
    text = make_client(owners=m, metrics=metrics).get("/metrics").text
    assert 'projector_partition_owned{partition="1"} 1.0' in text
    assert 'projector_partition_owned{partition="0"} 0.0' in text
    assert "projector_cluster_settled 1.0" in text
