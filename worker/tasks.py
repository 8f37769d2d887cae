"""The Celery task: thin. Parse the argument, run the pipeline, map errors to redelivery."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, signals

from worker.celery_app import TASK_NAME, get_app
from worker.errors import StoreError, WalletTransientError

log = logging.getLogger("vipflow.tasks")
app = get_app()


def _json_logs(**_: Any) -> None:
    # Connecting here keeps Celery from installing its own handlers: every line is masked JSON.
    from worker.logs import configure_logging

    configure_logging(app.vipflow_settings.log.level)


def _warm_up(**_: Any) -> None:
    # Build the adapters and load the rules before the first task, and take SIGHUP for a rules
    # reload (Celery's own SIGHUP handler would restart the whole worker instead).
    from worker.bootstrap import process_deps
    from worker.reload import RuleHolder

    rules = process_deps(app.vipflow_settings).rules
    if isinstance(rules, RuleHolder):
        rules.start(app.vipflow_settings.rules.reload_interval_s, sighup=True)


signals.setup_logging.connect(_json_logs, weak=False)
signals.worker_ready.connect(_warm_up, weak=False)


@app.task(  # type: ignore[untyped-decorator]  # celery ships no type hints
    name=TASK_NAME,
    bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def process_notification(self: Task, archive_entry_id: str) -> None:
    """Decide and act on one archived notification (see ``worker.pipeline.process``)."""
    import redis

    from worker.bootstrap import process_deps
    from worker.pipeline import process

    settings = self.app.vipflow_settings
    try:
        process(str(archive_entry_id), process_deps(settings))
    except (StoreError, redis.RedisError, WalletTransientError) as exc:
        # Nothing is lost: the entry stays pending in the archive and every step is recorded.
        retries = self.request.retries
        if retries >= settings.worker.max_deliveries:
            log.error("giving up after retries; the archive keeps the entry pending for replay",
                      extra={"entry_id": archive_entry_id, "error": type(exc).__name__})
            raise
        delay: Any = min(2 ** retries, 30)
        log.warning("retrying", extra={"entry_id": archive_entry_id, "error": type(exc).__name__,
                                       "retry_in_s": delay})
        raise self.retry(exc=exc, countdown=delay) from None
