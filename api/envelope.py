"""The response envelope ``{success, data, errors, request_id}`` and request ids."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# A client's own X-Request-ID is kept when it is short and plain: it ends up in
# logs and headers, so nothing that could split a header or a log line.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


def new_request_id() -> str:
    """``req_`` + a 26-character ULID: 48-bit milliseconds, 80 random bits, Crockford base32."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "req_" + "".join(reversed(chars))


def request_id_from(header: str | None) -> str:
    if header is not None and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return new_request_id()


class JSONResponse(Response):
    """orjson-encoded JSON; content is already plain JSON types."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def ok(
    data: Any, request_id: str, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"success": True, "data": data, "errors": None, "request_id": request_id}
    return JSONResponse(body, status_code=status_code, headers=headers)


def paged(
    items: list[Any], total: int, limit: int, offset: int, request_id: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The paged envelope: ``data`` a list, ``meta`` its total and the page asked."""
    body = {
        "success": True,
        "data": items,
        "meta": {"total": total, "limit": limit, "offset": offset},
        "errors": None,
        "request_id": request_id,
    }
    return JSONResponse(body, headers=headers)


def error_body(code: str, message: str, request_id: str, data: Any = None) -> dict[str, Any]:
    return {
        "success": False,
        "data": data,
        "errors": [{"code": code, "message": message}],
        "request_id": request_id,
    }


def fail(
    status_code: int,
    code: str,
    message: str,
    request_id: str,
    *,
    data: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, request_id, data), status_code=status_code, headers=headers
    )
