"""``vipflow worker``: run the Celery worker (``vipflow tx show`` lives in ``producers.commands.tx_cmd``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.config import Settings
    from worker.heartbeat import Heartbeat, Readiness
    from worker.pipeline import Deps


def add_parser(subparsers: Any) -> None:
    """Register ``worker``."""
    from producers.commands.numbers import whole  # the CLI's argparse types (a count below 1 is refused)

    worker: argparse.ArgumentParser = subparsers.add_parser(
        "worker", help="run the Celery worker that decides and acts on notifications")
    worker.add_argument("--pool", help="worker pool (default: worker.pool)")
    worker.add_argument("--concurrency", type=whole(1, 512), help="threads/processes (default: worker.concurrency)")
    worker.add_argument("--queue", help="queue to consume (default: worker.queue)")
    worker.set_defaults(func=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    """Start Celery's worker with the configured pool, concurrency and queue; its exit code.

    A configuration that cannot work (``worker.startup.check_can_work``: no ``vip.operator_id``, no secret
    key, no rules at ``rules.path``) stops it first, before it logs or consumes anything: ConfigError, one
    line naming the key, exit code 2. It then says which Redis, ledger, queue and rules it uses, and waits
    for Redis at most ``worker.broker_connect_timeout_s``; a Redis that does not answer by then, or that is
    lost for as long later, stops it with StoreError (exit code 1), so a supervisor sees a failed process.
    """
    import logging

    from worker.celery_app import create_celery
    from worker.config import load_settings
    from worker.config_report import ledger_summary, redis_summary
    from worker.drain import Drainer
    from worker.errors import StoreError
    from worker.heartbeat import Readiness
    from worker.ledger import Ledger
    from worker.logs import configure_logging
    from worker.masking import operator_hosts
    from worker.metrics import cleanup_multiprocess, start_worker_metrics
    from worker.rule_paths import rules_origin
    from worker.startup import check_can_work
    from worker.store.archive import Archive
    from worker.store.connection import answers, connect, wait_for_redis, where

    settings = load_settings(getattr(args, "config", None))
    check_can_work(settings)  # before the drain, the expiry and the consumer: nothing is taken
    configure_logging(settings.log.level, hosts=operator_hosts(settings))
    pool = args.pool or settings.worker.pool
    queue = args.queue or settings.worker.queue
    concurrency = args.concurrency or settings.worker.concurrency
    timeout_s = settings.worker.broker_connect_timeout_s
    logging.getLogger("vipflow.worker").info(
        "worker starting: Redis %s, ledger %s, queue %s, rules %s, pool %s x %d; exits after %g s without Redis",
        redis_summary(settings), ledger_summary(settings), queue, rules_origin(settings.rules.path), pool,
        concurrency, timeout_s)
    if settings.rules.candidate is not None:
        logging.getLogger("vipflow.worker").info(
            "percentage rollout: candidate rules %s decide %.2f %% of transactions (rules.candidate_share)",
            settings.rules.candidate, settings.rules.candidate_share)
    wait_for_redis(settings.redis, timeout_s)
    readiness = Readiness()  # /readyz and /healthz answer from it (worker.health)
    # Before the pool forks: prefork children must inherit the metrics directory.
    metrics_dir = start_worker_metrics(settings, pool, queue, readiness)
    heartbeat: Heartbeat | None = None
    try:
        ledger = Ledger.open(settings.database.url)  # SchemaOutdated stops the start, naming the command
        client = connect(settings.redis)
        Drainer(client, Archive(client, settings.redis.key_prefix), ledger, settings.redis.key_prefix,
                settings.ledger.drain_interval_s).start()
        from worker.bootstrap import bootstrap
        from worker.expiry import Expirer

        deps = bootstrap(settings, ledger=ledger)
        Expirer(deps).start()  # holds left waiting: one worker at a time
        app = create_celery(settings)
        import worker.celery_app as celery_app

        celery_app._app = app  # the task module registers on this app, not a second one
        heartbeat = start_heartbeat(settings, client, deps, readiness, pool=pool, concurrency=concurrency,
                                    queue=queue)
        try:
            # app.Worker rather than app.worker_main: worker_main drops the worker's exit code.
            worker = app.Worker(pool_cls=pool, concurrency=concurrency, queues=[queue], loglevel=settings.log.level,
                                without_gossip=True, without_mingle=True)
            worker.start()
        except SystemExit as exc:  # a start-up check (the ledger's schema) refused
            return int(exc.code or 0)
        code = int(worker.exitcode or 0)
    finally:
        if heartbeat is not None:
            heartbeat.stop()  # a clean stop: not reported as a missing worker
        if metrics_dir is not None:
            cleanup_multiprocess(metrics_dir)
    if code != 0 and not answers(settings.redis):
        raise StoreError(f"the worker stopped: Redis at {where(settings.redis)} did not answer for "
                         f"worker.broker_connect_timeout_s ({timeout_s:g} s); start it or fix redis.url, then "
                         "start the worker again")
    return code


def start_heartbeat(settings: Settings, client: Any, deps: Deps, readiness: Readiness, *, pool: str,
                    concurrency: int, queue: str) -> Heartbeat:
    """Start this worker's heartbeat (``worker.heartbeat``): every ``worker.heartbeat_interval_s`` seconds its
    identity, the rules versions of ``deps.rules`` and its readiness go to Redis; Celery's ``worker_ready``
    and ``worker_shutting_down`` signals say whether its consumer runs."""
    from celery import signals

    from worker.heartbeat import Heartbeat
    from worker.ledger.schema import ping

    def versions() -> dict[str, Any]:
        book = deps.rules.current()
        return {name: {"version": rs.version, "hash": rs.content_hash} for name, rs in sorted(book.rulesets.items())}

    def consumer_up(**_: Any) -> None:
        readiness.consumer = True

    def consumer_down(**_: Any) -> None:
        readiness.consumer = False

    signals.worker_ready.connect(consumer_up, weak=False)
    signals.worker_shutting_down.connect(consumer_down, weak=False)
    heartbeat = Heartbeat(client, settings.redis.key_prefix, interval_s=settings.worker.heartbeat_interval_s,
                          identity={"pool": pool, "concurrency": concurrency, "queue": queue,
                                    "metrics_port": settings.worker.metrics_port},
                          rules_versions=versions, ledger_check=lambda: ping(deps.ledger.engine), readiness=readiness)
    heartbeat.start()
    return heartbeat
