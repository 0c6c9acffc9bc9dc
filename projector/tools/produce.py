"""``projector produce``: validate a JSONL file of events, then produce it.

All or nothing by default: the whole file is validated before anything is
sent, every bad line is reported by number with the reason the projector
would dead-letter it for, and one bad line means nothing is sent. With
``--skip-invalid`` the valid lines are sent and the bad ones counted.

The file is read twice (validate, then send) rather than held in memory, so
a file of millions of events needs no more memory than a small one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from projector.settings import Topics
from projector.tools.emit import EmitError, EventEmitter
from schemas import decode_value


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ProduceReport:
    """What ``produce_file`` found and did.

    Attributes:
        events: valid events in the file.
        invalid: every bad line, in file order.
        produced: events sent (0 when the file was refused).
        records: Kafka records they went out in.
        skipped: bad lines left out under ``skip_invalid``.
    """

    path: Path
    bootstrap: str
    events: int = 0
    invalid: list[LineError] = field(default_factory=list)
    produced: int = 0
    records: int = 0
    skipped: int = 0

    def summary(self) -> str:
        text = f"produced {self.produced} events in {self.records} records to {self.bootstrap}"
        if self.skipped:
            text += f"; skipped {self.skipped} invalid lines"
        return text


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line:
                yield number, line


def _check(line: bytes) -> str | None:
    """The reason a line is not exactly one valid event, or None."""
    decoded = decode_value(line)
    if decoded.rejects:
        reject = decoded.rejects[0]
        prefix = "" if reject.index is None else f"item {reject.index}: "
        return prefix + reject.reason
    if not line.startswith(b"{"):
        return "not_an_object: expected one event object per line, got an array"
    return None


def validate_file(path: Path) -> tuple[int, list[LineError]]:
    """Count the valid events of a JSONL file and list its bad lines."""
    valid = 0
    invalid: list[LineError] = []
    for number, line in _lines(path):
        reason = _check(line)
        if reason is None:
            valid += 1
        else:
            invalid.append(LineError(number, reason))
    return valid, invalid


async def produce_file(
    path: str | Path,
    bootstrap: str,
    topics: Topics | None = None,
    *,
    skip_invalid: bool = False,
    array_size: int = 1,
    create_partitions: int | None = None,
) -> ProduceReport:
    """Validate a JSONL file of events and, unless refused, produce it.

    Args:
        path: one event object per line; blank lines are ignored.
        bootstrap: Kafka ``HOST:PORT``.
        topics: topic names; default the contract's.
        skip_invalid: send the valid lines even when some are bad.
        array_size: events per record (see ``EventEmitter``).
        create_partitions: create the topics first with this many partitions.

    Returns:
        The report; ``produced`` is 0 and nothing was sent when a bad line
        refused the file.

    Raises:
        OSError: the file cannot be read.
        EmitError: Kafka failed.
    """
    path = Path(path)
    topics = topics or Topics()
    events, invalid = validate_file(path)
    report = ProduceReport(path=path, bootstrap=bootstrap, events=events, invalid=invalid)
    if (invalid and not skip_invalid) or not events:
        return report
    if create_partitions is not None:
        from projector.intake.topics import TopicsError, ensure_topics

        try:
            await ensure_topics(bootstrap, topics.all, create_partitions)
        except TopicsError as e:
            raise EmitError(str(e)) from e
    bad = {e.line for e in invalid}
    async with EventEmitter(bootstrap, topics, array_size=array_size) as emitter:
        for number, line in _lines(path):
            if number not in bad:
                # Validated in the first pass; only routing is left to do.
                await emitter.emit(orjson.loads(line), validate=False)
        await emitter.flush()
        report.produced = emitter.events_sent
        report.records = emitter.records_sent
    report.skipped = len(invalid)
    return report
