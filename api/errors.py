"""Errors of the api package and their one mapping to HTTP.

Every error a client can see is an ``ApiError`` carrying an HTTP status and a
stable ``code``; the exception handlers in ``api.app`` turn them (and the
framework's own errors) into the envelope. Messages of server-side errors
never reach the client: they say only that something failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class ApiError(Exception):
    """Root of the api package's errors."""

    status: int = 500
    code: str = "INTERNAL_ERROR"
    public_message: str = "Internal server error; safe to retry with backoff."
    headers: ClassVar[Mapping[str, str] | None] = None  # sent with the error's answer

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.public_message)

    @property
    def client_message(self) -> str:
        """What the client sees: the message for 4xx, a fixed text for 5xx."""
        return str(self) if self.status < 500 else self.public_message


class Unauthorized(ApiError):
    status, code = 401, "UNAUTHORIZED"
    public_message = "Missing or invalid X-API-Key."


class Forbidden(ApiError):
    status, code = 403, "FORBIDDEN"
    public_message = "This API key does not own the campaign's workspace."


class InsufficientScope(ApiError):
    status, code = 403, "INSUFFICIENT_SCOPE"


class CampaignNotFound(ApiError):
    status, code = 404, "CAMPAIGN_NOT_FOUND"
    public_message = "Campaign not found."


class RunNotFound(ApiError):
    status, code = 404, "RUN_NOT_FOUND"
    public_message = "Run not found in this campaign."


class SnapshotNotFound(ApiError):
    status, code = 404, "SNAPSHOT_NOT_FOUND"
    public_message = "No snapshot has been frozen for this run yet."


class SwapRefused(ApiError):
    """The swap was not done (bad file, already serving it, another swap running,
    or catching up failed); the old database keeps serving."""

    status, code = 409, "SWAP_REFUSED"


class NotSwappable(ApiError):
    status, code = 409, "NOT_SWAPPABLE"
    public_message = (
        "This server has no database file to swap: a read-only `projector api`, or a "
        "node with a store per partition (`--data-dir`)."
    )


class SwapNotReady(ApiError):
    """The server's projector is still starting: a swap cannot run yet, and nothing
    changed. ``projector swap`` waits and retries after ``Retry-After``."""

    status, code = 503, "NOT_READY"
    headers = {"Retry-After": "2"}
    public_message = "The projector is still starting; retry in a few seconds."


class PartitionUnavailable(ApiError):
    """No node can answer for a partition now: its ownership is moving (a rebalance
    or a restore is running), its owner is unreachable, or a forwarded request
    reached a node that no longer owns it. Clients retry after ``Retry-After``."""

    status, code = 503, "PARTITION_UNAVAILABLE"
    # A rebalance settles within seconds (docs/decisions/0031-routing-as-asgi-middleware.md).
    headers = {"Retry-After": "2"}
    public_message = (
        "The campaign's partition is moving between nodes or its node is unreachable; "
        "retry after 2 s."
    )


class ReadStoreError(ApiError):
    """The projection database could not be read (or opened)."""


class KeysFileError(ApiError):
    """The API keys file is missing or malformed. Fix the file and restart;
    the message names the entry but never a key."""


# Codes the API emits besides the ones above (framework-level errors).
VALIDATION_ERROR = "VALIDATION_ERROR"
NOT_FOUND = "NOT_FOUND"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
NOT_READY = "NOT_READY"
INTERNAL_ERROR = "INTERNAL_ERROR"
