"""The key ring: digests only, constant-time lookup, clear errors that never show a key."""

from __future__ import annotations

import hashlib
import json

import pytest

from api.errors import KeysFileError
from api.keys import KeyRing

KEY = "s3cret-key-value-123"


def write(tmp_path, doc) -> str:
    path = tmp_path / "keys.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_plain_and_sha256_entries(tmp_path):
    other = "another-key-456789"
    ring = KeyRing.load(write(tmp_path, {"keys": [
        {"key": KEY, "workspace_id": "ws_a", "scopes": ["campaigns:read"]},
        {"key_sha256": hashlib.sha256(other.encode()).hexdigest().upper(),
         "workspace_id": "ws_b", "scopes": ["analytics:read", "pii:read"]},
    ]}))
    assert len(ring) == 2
    a = ring.lookup(KEY)
    assert a is not None and a.workspace_id == "ws_a" and a.has("campaigns:read")
    assert not a.has("pii:read")
    b = ring.lookup(other)
    assert b is not None and b.workspace_id == "ws_b" and b.scopes == {"analytics:read", "pii:read"}
    assert ring.lookup(None) is None and ring.lookup("") is None
    assert ring.lookup(KEY.upper()) is None
    assert KEY not in repr(ring)


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ("{not json " + KEY, "not valid JSON"),
        ([], '{"keys": [...]}'),
        ({"keys": "x"}, '{"keys": [...]}'),
        ({"keys": [1]}, "keys[0] is not an object"),
        ({"keys": [{"workspace_id": "w", "scopes": []}]}, 'exactly one of "key" or "key_sha256"'),
        ({"keys": [{"key": KEY, "key_sha256": "ab" * 32, "workspace_id": "w", "scopes": []}]},
         "exactly one"),
        ({"keys": [{"key": "short", "workspace_id": "w", "scopes": []}]}, "at least 8"),
        ({"keys": [{"key_sha256": "xyz", "workspace_id": "w", "scopes": []}]}, "64 hex"),
        ({"keys": [{"key": KEY, "scopes": []}]}, "workspace_id"),
        ({"keys": [{"key": KEY, "workspace_id": "w", "scopes": "campaigns:read"}]}, "list"),
        ({"keys": [{"key": KEY, "workspace_id": "w", "scopes": ["superuser"]}]}, "unknown scope"),
        ({"keys": [{"key": KEY, "workspace_id": "w", "scopes": []},
                   {"key": KEY, "workspace_id": "v", "scopes": []}]}, "twice"),
    ],
)
def test_malformed_files_give_clear_errors_without_the_key(tmp_path, doc, fragment):
    with pytest.raises(KeysFileError) as e:
        KeyRing.load(write(tmp_path, doc))
    assert fragment in str(e.value)
    assert KEY not in str(e.value)
    assert str(tmp_path) in str(e.value)  # names the file


def test_missing_file(tmp_path):
    with pytest.raises(KeysFileError, match="cannot read"):
        KeyRing.load(tmp_path / "absent.json")
