"""The ingestor's Prometheus metrics: labels carry routes and results, never ids or PII."""

from __future__ import annotations

from prometheus_client import Counter

RECEIVED = Counter(
    "vipflow_notifications_received_total",
    "Notification requests received by the ingestor, by route and result",
    ["route", "result"],
)
