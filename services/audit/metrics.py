"""The audit service's Prometheus families, registered once on the app's registry.

Operators watch three things: is the consumer keeping up (lag), is everything landing (stored vs
duplicate), and is anything being thrown away (dead-lettered). Insert latency explains the lag.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class AuditMetrics:
    lag: Gauge
    ack_pending: Gauge
    stored: Counter
    duplicates: Counter
    dead_lettered: Counter
    retried: Counter
    insert_seconds: Histogram
    pruned: Counter

    @classmethod
    def register(cls, registry: CollectorRegistry) -> AuditMetrics:
        labels = ["stream"]
        return cls(
            lag=Gauge(
                "audit_consumer_lag_messages",
                "Messages in the stream not yet delivered to the audit consumer (num_pending)",
                ["stream", "consumer"],
                registry=registry,
            ),
            ack_pending=Gauge(
                "audit_consumer_ack_pending_messages",
                "Messages delivered to the audit consumer and not yet acknowledged (num_ack_pending)",
                ["stream", "consumer"],
                registry=registry,
            ),
            stored=Counter(
                "audit_events_stored_total", "Events appended to the activity log", labels, registry=registry
            ),
            duplicates=Counter(
                "audit_events_duplicate_total",
                "Deliveries of an event_id already in the log (acknowledged, nothing written)",
                labels,
                registry=registry,
            ),
            dead_lettered=Counter(
                "audit_events_dead_lettered_total",
                "Messages that can never be stored, kept in audit.dead_letters and terminated",
                labels,
                registry=registry,
            ),
            retried=Counter(
                "audit_events_retried_total",
                "Deliveries negatively acknowledged for a later retry (Postgres unavailable, ...)",
                labels,
                registry=registry,
            ),
            insert_seconds=Histogram(
                "audit_insert_duration_seconds",
                "Time to append one event to its chain (connection, lock, insert, commit)",
                labels,
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
                registry=registry,
            ),
            pruned=Counter("audit_rows_pruned_total", "Activity rows deleted by the retention job", registry=registry),
        )


AUDIT_METRICS = web.AppKey("audit_metrics", AuditMetrics)
