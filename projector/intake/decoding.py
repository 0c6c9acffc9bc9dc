"""Records to events on the consumer's loop: the compiled fast path first, pydantic as judge.

``schemas.decode.decode_value`` decides what the contract accepts; the fast
path (``schemas.fastdecode``) only ever says "accepted" or "ask the judge".
Neither may raise here: an exception would crash the agent on every
redelivery of the record, stalling its partition for good.
"""

from __future__ import annotations

import logging

from schemas import decode_value
from schemas.decode import Decoded, Reject
from schemas.errors import RejectCode
from schemas.fastdecode import FastEvent, fast_events

log = logging.getLogger(__name__)


def decode(raw: bytes) -> Decoded:
    """``decode_value``, but a record that makes the decoder itself fail is a dead letter.

    A last resort: ``decode_value`` rejects bad content rather than raise on it
    (nesting past orjson's limits included), so an exception here is a bug in
    it. Uncaught, it would crash the faust agent on every redelivery of the
    record (a poison pill stalling its partition for good).
    """
    try:
        return decode_value(raw)
    except Exception as e:
        code = RejectCode.TOO_DEEP if "ecursion" in str(e) else RejectCode.INVALID_JSON
        log.warning("decoder failed on a record (%s: %s); dead-lettering it", type(e).__name__, e)
        reason = f"{code}: the decoder failed: {type(e).__name__}: {e}"
        return Decoded([], [Reject(None, reason, raw)])


def fast(raw: bytes) -> list[FastEvent] | None:
    """The record's events by the compiled fast path, or None: ``decode`` judges it.

    Several times cheaper than pydantic on this loop, which also runs faust
    (docs/decisions/0012-compiled-fast-decoder.md). The events stay canonical
    JSON: a large flush merges them in SQL as they are, a small one folds their
    structs (``FastEvent.event()``, no pydantic) in the writer thread
    (``Store.flush``). Never raises: anything unexpected goes to the judge.
    """
    try:
        got = fast_events(raw)
    except Exception:
        return None
    return None if got is None else got[0]
