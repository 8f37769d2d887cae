"""``vipflow worker``: run the Celery worker (``vipflow tx show`` lives in ``producers.commands.tx_cmd``)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``worker``."""
    worker: argparse.ArgumentParser = subparsers.add_parser(
        "worker", help="run the Celery worker that decides and acts on notifications")
    worker.add_argument("--pool", help="worker pool (default: worker.pool)")
    worker.add_argument("--concurrency", type=int, help="threads/processes (default: worker.concurrency)")
    worker.add_argument("--queue", help="queue to consume (default: worker.queue)")
    worker.set_defaults(func=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    """Start Celery's worker with the configured pool, concurrency and queue; its exit code."""
    from worker.celery_app import create_celery
    from worker.config import load_settings
    from worker.drain import Drainer
    from worker.ledger import Ledger
    from worker.logs import configure_logging
    from worker.metrics import cleanup_multiprocess, start_worker_metrics
    from worker.store.archive import Archive
    from worker.store.connection import connect

    settings = load_settings(getattr(args, "config", None))
    configure_logging(settings.log.level)
    pool = args.pool or settings.worker.pool
    queue = args.queue or settings.worker.queue
    # Before the pool forks: prefork children must inherit the metrics directory.
    metrics_dir = start_worker_metrics(settings, pool, queue)
    ledger = Ledger.open(settings.database.url)  # SchemaOutdated stops the start, naming the command
    client = connect(settings.redis)
    Drainer(client, Archive(client, settings.redis.key_prefix), ledger, settings.redis.key_prefix,
            settings.ledger.drain_interval_s).start()
    app = create_celery(settings)
    import worker.celery_app as celery_app

    celery_app._app = app  # the task module registers on this app, not a second one
    argv = ["worker", "--pool", pool,
            "--concurrency", str(args.concurrency or settings.worker.concurrency),
            "--queues", queue,
            "--loglevel", settings.log.level, "--without-gossip", "--without-mingle"]
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        if metrics_dir is not None:
            cleanup_multiprocess(metrics_dir)
    return 0
