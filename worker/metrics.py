"""The worker's Prometheus metrics, the collector that reads Redis at scrape time, and the HTTP port.

Label values come from closed sets (outcomes, action names, results, VIP
endpoints) or from rule ids, which operators write as constants in rule files;
never a transaction id, an entry id, or anything a patron sent.

With Celery's prefork pool, counts are kept in prometheus-client's multiprocess
mode: ``prepare_multiprocess`` sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh
per-run directory before the pool forks, and the port serves the sum over every
child (dead ones included).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.config import Settings

log = logging.getLogger("vipflow.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NO_RULE = "(default)"  # the rule label of a decision no rule matched

DECISIONS = Counter("vipflow_decisions_total", "Decisions made, by ruleset and outcome",
                    ["ruleset", "outcome"])
DECISION_RULES = Counter(
    "vipflow_decision_rules_total",
    f"Rules matched by decisions, by ruleset, the decision's outcome and rule id ('{NO_RULE}': none matched)",
    ["ruleset", "outcome", "rule"])
SHADOW_DECISIONS = Counter("vipflow_shadow_decisions_total",
                           "Shadow decisions beside live ones, by live and shadow outcome", ["live", "shadow"])
ACTIONS = Counter("vipflow_actions_total", "Actions finished, by action and result", ["action", "result"])
VIP_CALL_SECONDS = Histogram("vipflow_vip_call_seconds", "VIP Connect call latency, by endpoint", ["endpoint"],
                             buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
VIP_CALLS = Counter("vipflow_vip_calls_total", "VIP Connect calls, by endpoint and result",
                    ["endpoint", "result"])
RETRIES = Counter("vipflow_retries_total",
                  "Retries: 'task' (a task re-queued after a store failure), 'vip_approval' (approval rounds)",
                  ["what"])
DEAD_LETTERS = Counter("vipflow_dead_letters_total", "Notifications sent to the dead-letter list, by reason",
                       ["reason"])


def count_decision(ruleset: str, outcome: str, matched: Iterable[str]) -> None:
    """Count one decision and each rule it matched (``NO_RULE`` when none did)."""
    DECISIONS.labels(ruleset, outcome).inc()
    rules = list(matched) or [NO_RULE]
    for rule in rules:
        DECISION_RULES.labels(ruleset, outcome, rule).inc()


def count_decision_dict(decision: Mapping[str, Any]) -> None:
    """Count a decision in its recorded form (``Decision.to_dict()``)."""
    count_decision(str(decision.get("ruleset")), str(decision.get("outcome")),
                   [str(m.get("id")) for m in decision.get("matched", ())])


class StoreCollector(Collector):
    """Gauges read from Redis at scrape time: queue depth, review queue, dead letters, pending archive."""

    def __init__(self, redis: Any, prefix: str, queue: str, review_max_age_s: float):
        self._redis = redis
        self._prefix = prefix
        self._queue = queue
        self._max_age_s = review_max_age_s

    def _queue_depth(self) -> int:
        # Celery's Redis transport keeps priorities 3, 6 and 9 in lists named queue + '\x06\x16' + priority.
        names = [self._queue] + [f"{self._queue}\x06\x16{p}" for p in (3, 6, 9)]
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        return sum(int(n) for n in pipe.execute())

    def collect(self) -> Iterator[Metric]:
        """One Redis round trip per gauge; on a Redis failure only ``vipflow_store_up 0``."""
        now = time.time()
        review = f"{self._prefix}:review"
        try:
            depth = self._queue_depth()
            pipe = self._redis.pipeline(transaction=False)
            pipe.zcard(review)
            pipe.zrange(review, 0, 0, withscores=True)
            pipe.zcount(review, "-inf", now - self._max_age_s)
            pipe.llen(f"{self._prefix}:dlq")
            pipe.scard(f"{self._prefix}:archive:pending")
            size, oldest, overdue, dead, pending = pipe.execute()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when Redis does not
            log.warning("metrics: Redis unreachable at scrape (%s)", type(exc).__name__)
            yield GaugeMetricFamily("vipflow_store_up", "1 when Redis answered this scrape", value=0)
            return
        yield GaugeMetricFamily("vipflow_store_up", "1 when Redis answered this scrape", value=1)
        yield GaugeMetricFamily("vipflow_queue_depth", "Tasks waiting in the Celery queue", value=depth)
        yield GaugeMetricFamily("vipflow_review_queue_size", "Transactions waiting for review", value=size)
        age = max(now - float(oldest[0][1]), 0.0) if oldest else 0.0
        yield GaugeMetricFamily("vipflow_review_oldest_age_seconds",
                                "Age of the oldest transaction waiting for review (0 when none)", value=age)
        yield GaugeMetricFamily("vipflow_review_overdue", "Transactions waiting for review longer than "
                                "review.max_age_s", value=overdue)
        yield GaugeMetricFamily("vipflow_dead_letter_list_size", "Entries in the dead-letter list", value=dead)
        yield GaugeMetricFamily("vipflow_archive_pending", "Archived notifications not decided yet",
                                value=pending)


def prepare_multiprocess(base: str | None = None) -> str:
    """Point prometheus-client at a fresh per-run directory; call before the pool forks.

    Returns the directory (removed by :func:`cleanup_multiprocess`).
    """
    path = tempfile.mkdtemp(prefix="vipflow-metrics-", dir=base)
    os.environ[MULTIPROC_ENV] = path
    # prometheus-client picks its value class when imported (this module imports it): pick again,
    # and drop any labelled child made before, so every count from now on goes to the directory.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # untyped upstream
    for metric in (DECISIONS, DECISION_RULES, SHADOW_DECISIONS, ACTIONS, VIP_CALL_SECONDS, VIP_CALLS,
                   RETRIES, DEAD_LETTERS):
        metric.clear()
    return path


def cleanup_multiprocess(path: str) -> None:
    """Remove a per-run directory made by :func:`prepare_multiprocess`."""
    shutil.rmtree(path, ignore_errors=True)


def registry_for(multiprocess: bool, collectors: Iterable[Collector] = ()) -> CollectorRegistry:
    """The registry to serve: the sum over processes (multiprocess mode) or this process's own."""
    if multiprocess:
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
    else:
        registry = REGISTRY
    for collector in collectors:
        registry.register(collector)
    return registry


def serve(port: int, host: str, registry: CollectorRegistry) -> bool:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; False (logged) when the port is taken."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("metrics port %s:%d unavailable (%s); the worker runs without metrics",
                  host, port, exc.strerror, extra={"port": port})
        return False
    log.info("metrics on http://%s:%d/metrics", host, port, extra={"port": port})
    return True


def start_worker_metrics(settings: Settings, pool: str, queue: str) -> str | None:
    """Serve the worker's metrics on ``worker.metrics_port`` (0: off); the multiprocess directory, if any.

    Call in the worker's main process before the pool starts: with ``prefork``
    the children then count into one per-run directory that the port sums.
    """
    port = settings.worker.metrics_port
    if port == 0:
        return None
    from worker.store.connection import connect

    path = prepare_multiprocess() if pool == "prefork" else None
    collector = StoreCollector(connect(settings.redis), settings.redis.key_prefix, queue,
                               settings.review.max_age_s)
    serve(port, settings.worker.metrics_host, registry_for(path is not None, [collector]))
    return path
