"""Read SQL of the API. Identifiers come only from the table codecs; values are parameters."""

from __future__ import annotations

from projector.tables import BATCHES, CAMPAIGNS, RECIPIENTS, RUNS, SNAPSHOTS

CAMPAIGN = f"SELECT {CAMPAIGNS.select_list} FROM campaigns WHERE campaign_id = ?"
RUNS_OF = f"SELECT {RUNS.select_list} FROM runs WHERE campaign_id = ?"
RUN = f"SELECT {RUNS.select_list} FROM runs WHERE run_id = ?"
BATCHES_OF = f"SELECT {BATCHES.select_list} FROM batches WHERE run_id = ?"
# F11 order; NULLS LAST matches views.recipient_sort_key (unknown sequence last).
RECIPIENTS_OF = (
    f"SELECT {RECIPIENTS.select_list} FROM recipients WHERE run_id = ? "
    "ORDER BY batch_sequence ASC NULLS LAST, recipient_id ASC LIMIT ? OFFSET ?"
)
SNAPSHOT = f"SELECT {SNAPSHOTS.select_list} FROM snapshots WHERE run_id = ?"
# Auth and freshness of a campaign in one round trip: the hot path of status polling.
CAMPAIGN_HEAD = (
    "SELECT c.workspace_id, coalesce(p.position, 0) FROM campaigns c "
    "LEFT JOIN campaign_positions p ON p.campaign_id = c.campaign_id WHERE c.campaign_id = ?"
)
POSITION = "SELECT position FROM campaign_positions WHERE campaign_id = ?"
OFFSETS = "SELECT topic, partition, next_offset FROM source_offsets"
FLUSH_SEQ = "SELECT value FROM projector_meta WHERE key = 'flush_seq'"
# Tables a database must hold to be served.
REQUIRED_TABLES = ("campaigns", "runs", "batches", "recipients", "snapshots",
                   "campaign_positions", "source_offsets", "projector_meta")
TABLES = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
