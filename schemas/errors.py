"""Errors and reject-reason codes of the ``schemas`` package."""

from __future__ import annotations

from enum import StrEnum


class SchemasError(Exception):
    """Root of every error raised by the ``schemas`` package."""


class ExportError(SchemasError):
    """The JSON Schema files could not be written or read; check the output folder."""


class RejectCode(StrEnum):
    """Stable prefixes of ``Reject.reason``; dead-letter consumers may match on them.

    A reason is always ``"<code>: <detail>"``; the detail names the field path
    where there is one.
    """

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    EMPTY_ARRAY = "empty_array"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    TOO_LARGE = "too_large"
    TOO_DEEP = "too_deep"
