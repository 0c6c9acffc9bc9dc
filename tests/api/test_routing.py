"""Where a request goes: the routing decision and the headers that travel, without servers."""

from __future__ import annotations

import pytest

from api.proxy import end_to_end
from api.routing import (
    LOCAL,
    Owners,
    Remote,
    StaticOwners,
    Unavailable,
    campaign_in_path,
    route_of,
)
from schemas.partitioner import partition_of

ME, OTHER = "http://10.0.0.5:8000", "http://10.0.0.6:8000"


def owners_at(
    url: str = ME, partitions: int = 4, table: dict[int, str | None] | None = None
) -> StaticOwners:
    return StaticOwners(url, partitions, {} if table is None else table)


def test_a_static_table_is_an_owners() -> None:
    assert isinstance(owners_at(), Owners)


@pytest.mark.parametrize(("path", "campaign"), [
    (b"/v1/campaign/c1/status", "c1"),
    (b"/v1/campaign/c1/runs/r1/recipients", "c1"),
    (b"/campaigns/c%201/status", "c 1"),
    (b"/v1/campaign/a%2Fb/status", "a/b"),  # an encoded slash stays in the id
    (b"/v1/campaigns", None),
    (b"/campaigns/c1/analytics", None),
    (b"/v1/campaign/c1", None),
    (b"/healthz", None),
])
def test_campaign_in_path(path: bytes, campaign: str | None) -> None:
    assert campaign_in_path(path) == campaign


def test_route_of() -> None:
    p = partition_of("c1", 4)
    assert route_of(None, "c1", None) is LOCAL
    assert route_of(owners_at(table={p: ME + "/"}), "c1", None) is LOCAL
    assert route_of(owners_at(table={p: ME}), "c1", OTHER) is LOCAL  # forwarded to its owner
    assert route_of(owners_at(table={p: OTHER}), "c1", None) == Remote(OTHER)
    assert route_of(owners_at(table={p: OTHER}), "c1", OTHER) == Unavailable("hop")
    assert route_of(owners_at(table={}), "c1", None) == Unavailable("unsettled")
    assert route_of(owners_at(partitions=0), "c1", None) == Unavailable("unsettled")


def test_hop_by_hop_headers_stay_on_their_hop() -> None:
    headers = [("Connection", "keep-alive, X-Trace"), ("X-Trace", "1"), ("Keep-Alive", "5"),
               ("Transfer-Encoding", "chunked"), ("Host", "a"), ("ETag", 'W/"1"'),
               ("X-Projection-Lag", "0"), ("Retry-After", "2"), ("Set-Cookie", "a=1"),
               ("Set-Cookie", "b=2")]
    assert end_to_end(headers, frozenset({"host"})) == [
        ("etag", 'W/"1"'), ("x-projection-lag", "0"), ("retry-after", "2"),
        ("set-cookie", "a=1"), ("set-cookie", "b=2"),
    ]
