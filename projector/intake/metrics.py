"""Prometheus metrics of the pipeline and the API, in one registry.

A private registry (not the global default) so tests can build several apps
in one process without duplicate-metric errors.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Fine around the 20 ms status latency target (docs/benchmarks.md#targets).
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_applied = Counter(
            "projector_events_applied", "Events folded into DuckDB", registry=r
        )
        self.records_consumed = Counter(
            "projector_records_consumed", "Kafka records consumed", ["topic"], registry=r
        )
        self.deadlettered = Counter(
            "projector_deadlettered", "Records or array items dead-lettered", ["reason"], registry=r
        )
        self.flushes = Counter("projector_flushes", "Micro-batch flushes committed", registry=r)
        self.flush_failures = Counter(
            "projector_flush_failures", "Flushes rolled back (retried)", registry=r
        )
        self.flush_seconds = Histogram(
            "projector_flush_seconds",
            "Duration of one flush transaction",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        # Producer send time (the record's Kafka timestamp) to the commit that
        # applied it: what a reader of the API waits for. Redeliveries after a
        # crash count with their old timestamps, so a recovery shows up here.
        self.freshness = Histogram(
            "projector_event_freshness_seconds",
            "Record timestamp to the DuckDB commit that applied it",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.flush_events = Histogram(
            "projector_flush_events",
            "Events per flush",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000),
            registry=r,
        )
        self.lag = Gauge(
            "projector_lag_records",
            "Records behind the log end",
            ["topic", "partition"],
            registry=r,
        )
        self.lag_total = Gauge(
            "projector_lag_records_total", "Records behind, all partitions", registry=r
        )
        self.inconsistent = Gauge(
            "projector_partition_inconsistent",
            "1 when a partition's log no longer holds the stored offset (replay needed)",
            ["topic", "partition"],
            registry=r,
        )
        # Cluster membership (projector.intake.membership): what this node owns.
        self.partition_owned = Gauge(
            "projector_partition_owned",
            "1 when this node owns the partition in the group's latest assignment",
            ["partition"],
            registry=r,
        )
        self.partition_restoring = Gauge(
            "projector_partition_restoring",
            "Records a gained partition still lacks to reach its last owner's offsets "
            "(-1: waiting for its shard's file; absent or 0: answering)",
            ["partition"],
            registry=r,
        )
        self.cluster_settled = Gauge(
            "projector_cluster_settled",
            "1 while this node's assignment is in place and sought (0: rebalancing)",
            registry=r,
        )
        # projector.intake.membership: the node stopped running longer than its
        # lease (SIGSTOP, a frozen VM, a blocked loop), so it fenced itself.
        self.lease_lost = Counter(
            "projector_lease_lost",
            "Times this node stopped answering for and writing to its partitions because "
            "it was paused past its group session (until the group reassigned them)",
            registry=r,
        )
        # Several nodes (docs/decisions/0031-routing-as-asgi-middleware.md): requests
        # answered by another node, and 503s for a partition with no owner to ask.
        self.http_proxied = Counter(
            "projector_http_proxied",
            "Requests forwarded to a partition's owner, or list parts gathered from other nodes",
            ["kind"],
            registry=r,
        )
        self.http_unroutable = Counter(
            "projector_http_unroutable",
            "503s: the partition's owner is unsettled, unreachable, or not this hop's node",
            ["reason"],
            registry=r,
        )
        # Reads of a stored log mark back from the broker; before a commit
        # only after an assignment or a reconnection (projector.intake.epoch).
        self.mark_checks = Counter(
            "projector_log_mark_checks",
            "Stored log marks read back from the broker to confirm the log is the same",
            registry=r,
        )
        self.log_epochs = Counter(
            "projector_log_epochs",
            "Reconnections or leader changes after which log marks are read back again",
            registry=r,
        )
        self.http_seconds = Histogram(
            "projector_http_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
