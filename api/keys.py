"""API keys: who a presented ``X-API-Key`` is and what it may read.

Keys are held only as SHA-256 digests. A presented key is hashed and compared
against every entry with ``hmac.compare_digest`` without stopping at the first
match, so the time taken does not depend on which (or whether any) key
matched. Neither keys nor their digests are ever logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.errors import KeysFileError

SCOPE_CAMPAIGNS = "campaigns:read"
SCOPE_ANALYTICS = "analytics:read"
SCOPE_PII = "pii:read"
# Operator actions on the running server (blue/green swap); no campaign data.
SCOPE_ADMIN = "admin"
KNOWN_SCOPES = frozenset({SCOPE_CAMPAIGNS, SCOPE_ANALYTICS, SCOPE_PII, SCOPE_ADMIN})

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: one workspace and its scopes."""

    workspace_id: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyRing:
    """Lookup of presented keys; build with ``load``/``from_dict``/``from_entries``."""

    def __init__(self, entries: Iterable[_Entry]) -> None:
        self._entries = tuple(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:  # never show digests
        return f"KeyRing({len(self._entries)} keys)"

    @classmethod
    def load(cls, path: Path | str) -> KeyRing:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise KeysFileError(f"cannot read API keys file {path}: {e.strerror}") from e
        try:
            data = json.loads(text)
        except ValueError as e:
            # The decoder's message can quote the file's text (a key): give the position only.
            pos = getattr(e, "lineno", None)
            where = f" (line {pos})" if pos is not None else ""
            raise KeysFileError(f"API keys file {path} is not valid JSON{where}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "keys") -> KeyRing:
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise KeysFileError(f'{source}: expected an object {{"keys": [...]}}')
        entries = [_parse_entry(item, i, source) for i, item in enumerate(data["keys"])]
        digests = [e.digest for e in entries]
        if len(set(digests)) != len(digests):
            raise KeysFileError(f"{source}: the same key is listed twice")
        return cls(entries)

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[str, str, Iterable[str]]]) -> KeyRing:
        """Keys given in code as ``(key, workspace_id, scopes)``; for tests and tools."""
        return cls.from_dict(
            {"keys": [{"key": k, "workspace_id": w, "scopes": list(s)} for k, w, s in entries]}
        )

    def lookup(self, presented: str | None) -> Principal | None:
        """The principal of a presented key, or None; constant time in the key's value."""
        if not presented:
            return None
        want = digest(presented)
        found: Principal | None = None
        for entry in self._entries:
            # No early exit: every entry is compared whatever matched.
            if hmac.compare_digest(entry.digest, want):
                found = entry.principal
        return found


def _parse_entry(item: Any, index: int, source: str) -> _Entry:
    where = f"{source}: keys[{index}]"
    if not isinstance(item, dict):
        raise KeysFileError(f"{where} is not an object")
    key, key_sha = item.get("key"), item.get("key_sha256")
    if (key is None) == (key_sha is None):
        raise KeysFileError(f'{where} needs exactly one of "key" or "key_sha256"')
    if key is not None:
        if not isinstance(key, str) or len(key) < 8:
            raise KeysFileError(f'{where}: "key" must be a string of at least 8 characters')
        d = digest(key)
    else:
        if not isinstance(key_sha, str) or not _HEX64.fullmatch(key_sha):
            raise KeysFileError(f'{where}: "key_sha256" must be 64 hex digits')
        d = bytes.fromhex(key_sha)
    workspace = item.get("workspace_id")
    if not isinstance(workspace, str) or not workspace:
        raise KeysFileError(f'{where}: "workspace_id" must be a non-empty string')
    scopes = item.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise KeysFileError(f'{where}: "scopes" must be a list of strings')
    unknown = sorted(set(scopes) - KNOWN_SCOPES)
    if unknown:
        raise KeysFileError(
            f"{where}: unknown scope(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(KNOWN_SCOPES))}"
        )
    return _Entry(d, Principal(workspace, frozenset(scopes)))
