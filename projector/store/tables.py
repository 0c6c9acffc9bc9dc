"""DuckDB table layout and the codecs between rows and columns.

The tables mirror the row classes in ``projector.fold.rows`` column for column, so
the writer can ship a micro-batch as one Arrow table per projection and the
reader can rebuild rows with ``cls(*tuple)``. Derived values (run status,
total batches, recipient status) are exposed to SQL users through views.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

import pyarrow as pa

from projector.fold.rows import (
    AttemptRow,
    BatchRow,
    CampaignRow,
    InsightRow,
    MessageRow,
    RecipientRow,
    RunRow,
    SnapshotRow,
)

# The version of the projection layout (tables, keys, meanings). A database
# records the version it was built with (``projector_meta``); a writer or
# server refuses one of another version instead of misreading its rows
# (docs/operations.md, "Upgrading the projection layout").
#   1: ids keyed globally (run_id, message_id).
#   2: ids scoped by workspace, campaign and run (contract F12).
#   3: recipients carry their winning report's time and error code; runs' delivery
#      insight is kept by the fold (``run_insight``).
SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Column:
    name: str
    sql: str
    arrow: pa.DataType
    json: bool = False


def _column(name: str, annotation: str) -> Column:
    if "datetime" in annotation:
        return Column(name, "TIMESTAMPTZ", pa.timestamp("us", tz="UTC"))
    if annotation.startswith("dict"):
        return Column(name, "VARCHAR", pa.string(), json=True)  # JSON text
    if annotation.startswith("list[str]"):
        return Column(name, "VARCHAR[]", pa.list_(pa.string()))
    if annotation.startswith("bool"):
        return Column(name, "BOOLEAN", pa.bool_())
    if annotation.startswith("float"):
        return Column(name, "DOUBLE", pa.float64())
    if annotation.startswith("int"):
        return Column(name, "BIGINT", pa.int64())
    return Column(name, "VARCHAR", pa.string())


@dataclass(frozen=True)
class Table:
    name: str
    row: type
    key: tuple[str, ...]

    @cached_property
    def columns(self) -> tuple[Column, ...]:
        return tuple(_column(f.name, str(f.type)) for f in fields(self.row))

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(c.name, c.arrow) for c in self.columns])

    def ddl(self, *, primary_key: bool = True) -> str:
        """CREATE TABLE; without the key for bulk loads that add it afterwards."""
        cols = ",\n  ".join(
            f"{c.name} {c.sql}{' NOT NULL' if c.name in self.key else ''}" for c in self.columns
        )
        key = f",\n  PRIMARY KEY ({', '.join(self.key)})" if primary_key else ""
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n  {cols}{key}\n)"

    def to_arrow(self, rows: list[Any]) -> pa.Table:
        arrays = []
        for c in self.columns:
            values = [getattr(r, c.name) for r in rows]
            if c.json:
                values = [None if v is None else json.dumps(v, sort_keys=True) for v in values]
            arrays.append(pa.array(values, type=c.arrow))
        return pa.Table.from_arrays(arrays, schema=self.arrow_schema)

    def from_tuple(self, values: tuple[Any, ...]) -> Any:
        if self._json_positions:
            values = tuple(
                json.loads(v) if i in self._json_positions and v is not None else v
                for i, v in enumerate(values)
            )
        return self.row(*values)

    @cached_property
    def _json_positions(self) -> frozenset[int]:
        return frozenset(i for i, c in enumerate(self.columns) if c.json)

    @cached_property
    def select_list(self) -> str:
        return ", ".join(c.name for c in self.columns)


# Keys follow F12: a campaign is (workspace_id, campaign_id), and every row
# below it is keyed by its run's key plus its own id (``projector.fold.rows``).
CAMPAIGN_KEY = ("workspace_id", "campaign_id")
RUN_KEY = (*CAMPAIGN_KEY, "run_id")
CAMPAIGNS = Table("campaigns", CampaignRow, CAMPAIGN_KEY)
RUNS = Table("runs", RunRow, RUN_KEY)
BATCHES = Table("batches", BatchRow, (*RUN_KEY, "batch_id"))
RECIPIENTS = Table("recipients", RecipientRow, (*RUN_KEY, "recipient_id"))
MESSAGES = Table("messages", MessageRow, (*RUN_KEY, "message_id"))
SNAPSHOTS = Table("snapshots", SnapshotRow, RUN_KEY)
ATTEMPTS = Table("attempts", AttemptRow, (*RUN_KEY, "recipient_id", "attempt"))
INSIGHT = Table(
    "run_insight", InsightRow, (*RUN_KEY, "kind", "label", "text", "text_null", "value")
)
PROJECTIONS = (CAMPAIGNS, RUNS, BATCHES, RECIPIENTS, MESSAGES, SNAPSHOTS, ATTEMPTS, INSIGHT)

# Secondary indexes (name -> DDL), built like the primary keys: by the writer
# that opens a database lacking them. A delivery report whose recipient is not
# in the writer's cache is matched on ``message_id``: a scan of every recipient
# unless the writer asks for a few ids at a time (``projector.store.keyed.KEY_CHUNK``),
# which DuckDB answers from this index (docs/decisions/0021-message-id-key-chunks.md).
INDEXES = {
    "recipients_by_message": "CREATE INDEX IF NOT EXISTS recipients_by_message "
    "ON recipients (message_id)",
}

BOOKKEEPING_DDL = (
    # The source of truth for where to resume: written in the same transaction
    # as the rows that the records up to next_offset produced.
    # last_offset/last_digest name the last record applied (its offset and a
    # digest of its value): a log that holds another record there was replaced
    # under us (a broker that restarted empty and was refilled), which offsets
    # alone cannot see once the new log grew past next_offset.
    """CREATE TABLE IF NOT EXISTS source_offsets (
  topic VARCHAR NOT NULL,
  partition INTEGER NOT NULL,
  next_offset BIGINT NOT NULL,
  last_offset BIGINT,
  last_digest BIGINT,
  PRIMARY KEY (topic, partition)
)""",
    # Databases written before the log marks existed.
    "ALTER TABLE source_offsets ADD COLUMN IF NOT EXISTS last_offset BIGINT",
    "ALTER TABLE source_offsets ADD COLUMN IF NOT EXISTS last_digest BIGINT",
    # One row per rejected record or array item; keyed by source position so a
    # reprocessed record after a crash is not counted twice.
    """CREATE TABLE IF NOT EXISTS deadletters (
  source_topic VARCHAR NOT NULL,
  source_partition INTEGER NOT NULL,
  source_offset BIGINT NOT NULL,
  item_index INTEGER NOT NULL,
  reason_code VARCHAR NOT NULL,
  reason VARCHAR NOT NULL,
  PRIMARY KEY (source_topic, source_partition, source_offset, item_index)
)""",
    # Flush sequence number of the last flush that changed a campaign: the
    # API's ETag. Not a projection of events (it depends on batching).
    """CREATE TABLE IF NOT EXISTS campaign_positions (
  workspace_id VARCHAR NOT NULL,
  campaign_id VARCHAR NOT NULL,
  position BIGINT NOT NULL,
  PRIMARY KEY (workspace_id, campaign_id)
)""",
    """CREATE TABLE IF NOT EXISTS projector_meta (
  key VARCHAR PRIMARY KEY,
  value BIGINT NOT NULL
)""",
)

VIEWS_DDL = (
    """CREATE OR REPLACE VIEW run_status AS
SELECT workspace_id, campaign_id, run_id,
  CASE WHEN terminal_status IS NOT NULL THEN terminal_status
       WHEN claimed_at IS NOT NULL THEN 'running' ELSE 'scheduled' END AS status,
  scheduled_at, claimed_at AS started_at, terminal_at AS completed_at,
  batches_completed AS current_batch,
  greatest(coalesce(declared_total_batches,
                    CAST(ceil(recipient_count / coalesce(batch_size, 1000)) AS BIGINT)),
           batches_seen) AS total_batches,
  recipient_count, greatest(recipient_count, known_recipients) AS total_recipients,
  sent, failed, skipped, delivered, failed_delivery,
  sent - delivered - failed_delivery AS pending_delivery,
  first_sent_at, last_sent_at, updated_at
FROM runs""",
    # batch_sequence as F11 orders by: the naming batch's, else the batch of
    # the winning submit's (null while its batch.created is unknown).
    """CREATE OR REPLACE VIEW recipient_status AS
SELECT rc.workspace_id, rc.campaign_id, rc.run_id, rc.recipient_id,
  coalesce(phone_number, submit_phone) AS phone_number,
  coalesce(rc.batch_sequence, b.batch_sequence) AS batch_sequence,
  CASE WHEN outcome IS NULL THEN 'pending'
       WHEN outcome <> 'sent' THEN outcome
       WHEN delivery_status = 'delivered' THEN 'delivered'
       WHEN delivery_status IN ('undelivered', 'expired', 'rejected', 'failed') THEN 'failed'
       ELSE 'sent' END AS recipient_status,
  message_id,
  CASE WHEN message_id IS NULL THEN NULL
       WHEN delivery_status IS NOT NULL THEN delivery_status
       WHEN outcome = 'sent' THEN 'sent' END AS message_status,
  attempt, CASE WHEN outcome = 'sent' THEN submitted_at END AS sent_at
FROM recipients rc LEFT JOIN batches b
  ON rc.batch_sequence IS NULL AND b.workspace_id = rc.workspace_id
  AND b.campaign_id = rc.campaign_id AND b.run_id = rc.run_id
  AND b.batch_id = rc.submit_batch_id""",
)
