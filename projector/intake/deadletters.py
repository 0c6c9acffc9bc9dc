"""Dead letters: records the decoder rejected, produced to ``campaign.deadletter``.

Each carries its source position, the reason and at most
``DEADLETTER_RAW_LIMIT`` bytes of the raw value (plus its SHA-256), so a
10 MB poison record cannot become a 10 MB dead letter. They are produced, and
acknowledged by the broker, before the flush that moves past them commits: at
worst a crash duplicates a dead letter, never loses one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import orjson

from projector.store.bookkeeping import DeadLetter

DEADLETTER_RAW_LIMIT = 64 * 1024


def deadletter_value(dl: DeadLetter, raw: bytes) -> bytes:
    """The JSON written to the dead-letter topic for one rejected item."""
    doc: dict[str, Any] = {
        "source_topic": dl.topic,
        "source_partition": dl.partition,
        "source_offset": dl.offset,
        "item_index": None if dl.item_index < 0 else dl.item_index,
        "reason": dl.reason,
        "reason_code": dl.reason_code,
        "raw_size": len(raw),
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
        "raw_truncated": len(raw) > DEADLETTER_RAW_LIMIT,
    }
    head = raw[:DEADLETTER_RAW_LIMIT]
    try:
        doc["raw"] = head.decode("utf-8")
    except UnicodeDecodeError:
        doc["raw_base64"] = base64.b64encode(head).decode("ascii")
    return orjson.dumps(doc)


class DeadLetterSink:
    """Produces dead letters with acks=all; ``send`` returns when the broker has them."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._producer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        if self._producer is not None:
            return
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            max_request_size=2 * 1024 * 1024,
            linger_ms=5,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, items: list[tuple[DeadLetter, bytes | None, bytes]]) -> None:
        futures = [
            await self._producer.send(self.topic, deadletter_value(dl, raw), key=key)
            for dl, key, raw in items
        ]
        await asyncio.gather(*futures)
