"""The worker's Prometheus metrics, the collector that reads Redis and the ledger at scrape time, and the
HTTP port.

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
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.config import Settings
from worker.heartbeat import Readiness, WorkerSeen, read_workers
from worker.store import keys
from worker.store.archive import oldest_age_s

if TYPE_CHECKING:
    from worker.ledger import Ledger

log = logging.getLogger("vipflow.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NO_RULE = "(default)"  # the rule label of a decision no rule matched

DECISIONS = Counter("vipflow_decisions_total", "Decisions made, by ruleset and outcome",
                    ["ruleset", "outcome"])
DECISION_RULES = Counter(
    "vipflow_decision_rules_total",
    f"Rules matched by decisions, by ruleset, the decision's outcome and rule id ('{NO_RULE}': none matched)",
    ["ruleset", "outcome", "rule"])
DECISION_SIDES = Counter(
    "vipflow_decisions_by_side_total",
    "Decisions made, by ruleset, rollout side (current: rules.path; candidate: rules.candidate) and outcome",
    ["ruleset", "side", "outcome"])
SHADOW_DECISIONS = Counter("vipflow_shadow_decisions_total",
                           "Shadow decisions beside live ones, by live and shadow outcome", ["live", "shadow"])
ACTIONS = Counter("vipflow_actions_total", "Actions finished, by action and result", ["action", "result"])
VIP_CALL_SECONDS = Histogram("vipflow_vip_call_seconds", "VIP Connect call latency, by endpoint", ["endpoint"],
                             buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
VIP_CALLS = Counter("vipflow_vip_calls_total", "VIP Connect calls, by endpoint and result",
                    ["endpoint", "result"])
EXPIRED = Counter("vipflow_expired_total",
                  "Transactions expired (left waiting past wallet.hold_max_age_s, any hold released), "
                  "by transaction type and the state they waited in", ["transaction_type", "state"])
RETRIES = Counter("vipflow_retries_total",
                  "Retries: 'task' (a task re-queued after a store failure), 'vip_approval' (approval rounds), "
                  "'vip_account_inquiry' (account inquiries asked again)",
                  ["what"])
# The lists each worker process decides with (worker.lists.holder); label: the list's name, which operators
# choose as they choose rule ids. Live processes only, the highest: a process still on an older version
# shows as the lower minimum of vipflow_list_version across instances.
LIST_VERSION = Gauge("vipflow_list_version", "The version of each named list this worker decides with", ["list"],
                     multiprocess_mode="livemax")
LIST_ENTRIES = Gauge("vipflow_list_entries", "How many entries each named list this worker decides with holds",
                     ["list"], multiprocess_mode="livemax")
DEAD_LETTERS = Counter("vipflow_dead_letters_total", "Notifications sent to the dead-letter list, by reason",
                       ["reason"])


def count_decision(ruleset: str, outcome: str, matched: Iterable[str]) -> None:
    """Count one decision and each rule it matched (``NO_RULE`` when none did)."""
    DECISIONS.labels(ruleset, outcome).inc()
    rules = list(matched) or [NO_RULE]
    for rule in rules:
        DECISION_RULES.labels(ruleset, outcome, rule).inc()


def count_side(ruleset: str, side: str, outcome: str) -> None:
    """Count one decision by its rollout side (``worker.rollout``: ``current`` or ``candidate``)."""
    DECISION_SIDES.labels(ruleset, side, outcome).inc()


def count_decision_dict(decision: Mapping[str, Any]) -> None:
    """Count a decision in its recorded form (``Decision.to_dict()``)."""
    count_decision(str(decision.get("ruleset")), str(decision.get("outcome")),
                   [str(m.get("id")) for m in decision.get("matched", ())])


_GAUGES = ("vipflow_store_up", "vipflow_queue_depth", "vipflow_archive_pending",
           "vipflow_archive_pending_oldest_age_seconds", "vipflow_workers_alive", "vipflow_workers_missing",
           "vipflow_ledger_up", "vipflow_review_queue_size", "vipflow_review_oldest_age_seconds",
           "vipflow_review_overdue", "vipflow_dead_letter_list_size")


class StoreCollector(Collector):
    """Gauges read at scrape time: the Celery queue depth and the intake buffer's pending set from Redis;
    the review queue and the dead letters from the ledger. Each store answers its own ``_up`` gauge."""

    def __init__(self, redis: Any, prefix: str, queue: str, review_max_age_s: float, ledger: Ledger):
        self._redis = redis
        self._prefix = prefix
        self._queue = queue
        self._max_age_s = review_max_age_s
        self._ledger = ledger

    def _read_redis(self) -> tuple[int, set[bytes], list[WorkerSeen]]:
        """(tasks in the Celery queue, the ids of intake buffer entries whose task has not finished, the
        workers seen lately): two round trips, three with workers (the pending set is as large as the
        backlog of unfinished notifications)."""
        # Celery's Redis transport keeps priorities 3, 6 and 9 in lists named queue + '\x06\x16' + priority.
        names = [self._queue] + [f"{self._queue}\x06\x16{p}" for p in (3, 6, 9)]
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        pipe.smembers(keys.pending(self._prefix))
        *depths, pending = pipe.execute()
        return sum(int(n) for n in depths), set(pending), read_workers(self._redis, self._prefix)

    def describe(self) -> Iterator[Metric]:
        """The gauges' names, without reading either store (registering must not need Redis or the ledger)."""
        for name in _GAUGES:
            yield GaugeMetricFamily(name, name)

    def collect(self) -> Iterator[Metric]:
        """One Redis round trip and two ledger queries; a store that fails gives only its ``_up 0``."""
        yield from self._redis_gauges()
        yield from self._ledger_gauges()

    def _redis_gauges(self) -> Iterator[Metric]:
        try:
            depth, pending, workers = self._read_redis()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when Redis does not
            log.warning("metrics: Redis unreachable at scrape (%s)", type(exc).__name__)
            yield GaugeMetricFamily("vipflow_store_up", "1 when Redis answered this scrape", value=0)
            return
        yield GaugeMetricFamily("vipflow_store_up", "1 when Redis answered this scrape", value=1)
        yield GaugeMetricFamily("vipflow_queue_depth", "Tasks waiting in the Celery queue", value=depth)
        yield GaugeMetricFamily("vipflow_archive_pending", "Notifications in the intake buffer whose task "
                                "has not finished", value=len(pending))
        yield GaugeMetricFamily("vipflow_archive_pending_oldest_age_seconds",
                                "Age of the oldest notification whose task has not finished (0 when none)",
                                value=oldest_age_s(pending, time.time()))
        alive = sum(1 for w in workers if w.alive)
        yield GaugeMetricFamily("vipflow_workers_alive", "Workers whose heartbeat is current", value=alive)
        yield GaugeMetricFamily("vipflow_workers_missing", "Workers seen in the last hour whose heartbeat "
                                "stopped without a clean stop", value=len(workers) - alive)

    def _ledger_gauges(self) -> Iterator[Metric]:
        try:
            size, oldest_age, overdue = self._ledger.review_stats(self._max_age_s)
            dead = self._ledger.dead_letter_count()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the database does not
            log.warning("metrics: the ledger did not answer at scrape (%s)", type(exc).__name__)
            yield GaugeMetricFamily("vipflow_ledger_up", "1 when the ledger's database answered this scrape",
                                    value=0)
            return
        yield GaugeMetricFamily("vipflow_ledger_up", "1 when the ledger's database answered this scrape", value=1)
        yield GaugeMetricFamily("vipflow_review_queue_size", "Transactions waiting for review", value=size)
        yield GaugeMetricFamily("vipflow_review_oldest_age_seconds",
                                "Age of the oldest transaction waiting for review (0 when none)", value=oldest_age)
        yield GaugeMetricFamily("vipflow_review_overdue", "Transactions waiting for review longer than "
                                "review.max_age_s", value=overdue)
        yield GaugeMetricFamily("vipflow_dead_letter_list_size", "Dead letters not yet replayed", value=dead)


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
    for metric in (DECISIONS, DECISION_RULES, DECISION_SIDES, SHADOW_DECISIONS, ACTIONS, VIP_CALL_SECONDS, VIP_CALLS,
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


def serve(port: int, host: str, registry: CollectorRegistry, readiness: Readiness | None = None,
          interval_s: float = 10.0) -> int | None:
    """Serve ``/metrics`` (and ``/healthz``, ``/readyz`` from ``readiness``: see ``worker.health``) on
    ``host:port`` (0: any free port) in a daemon thread; the port it listens on, or None (logged) when the
    port is taken."""
    from worker.health import health_app
    from worker.health import serve as serve_app

    served = serve_app(port, host, health_app(registry, readiness, interval_s))
    return None if served is None else served[0]


def start_worker_metrics(settings: Settings, pool: str, queue: str,
                         readiness: Readiness | None = None) -> str | None:
    """Serve the worker's metrics on ``worker.metrics_port`` (0: any free port, logged; None: off, logged),
    with ``/healthz`` and ``/readyz`` answered from ``readiness``; the multiprocess directory, if any.

    Call in the worker's main process before the pool starts: with ``prefork``
    the children then count into one per-run directory that the port sums.
    """
    port = settings.worker.metrics_port
    if port is None:
        log.info("metrics off (worker.metrics_port is off); set a port, or 0 for any free one, to serve them")
        return None
    from worker.ledger import Ledger
    from worker.ledger.schema import make_engine
    from worker.store.connection import connect

    path = prepare_multiprocess() if pool == "prefork" else None
    # No connection until the first scrape (the worker checks the schema itself); a forked child leaves
    # this engine's connections to the parent instead of closing them under it.
    engine = make_engine(settings.database.url, pool_size=1)
    os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
    collector = StoreCollector(connect(settings.redis), settings.redis.key_prefix, queue,
                               settings.review.max_age_s, Ledger(engine))
    serve(port, settings.worker.metrics_host, registry_for(path is not None, [collector]), readiness,
          settings.worker.heartbeat_interval_s)
    return path
RECOVERED = Counter("vipflow_recovered_total",
                    "Pending notifications the recovery sweep found without a task: 'requeued' (queued again), "
                    "'missing' (in neither the intake buffer nor the ledger)", ["result"])
