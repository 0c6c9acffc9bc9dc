"""Errors of the tools: the producer SDK, the embedded broker, the demo."""

from __future__ import annotations

from projector.errors import ProjectorError


class EmitError(ProjectorError):
    """Events could not be produced; the message names the broker and the cause."""


class InvalidEventError(EmitError, ValueError):
    """The event breaks the contract; nothing of it was sent.

    Attributes:
        reason: ``"<code>: <detail>"`` as in the projector's dead-letter records,
            e.g. ``"missing_field: run_id"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid event: {reason}")
        self.reason = reason


class BrokerError(RuntimeError):
    """The embedded broker could not be started or died; the message has its log tail."""


class BrokerPortInUseError(BrokerError):
    """The requested port is held by another process; pick another or use port 0."""


class DemoError(RuntimeError):
    """The demo cannot start; the message says why and what to do."""
