"""The Celery task: thin. Parse the argument, run the pipeline, map errors to redelivery."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from worker.celery_app import TASK_NAME, get_app
from worker.errors import StoreError, WalletTransientError

log = logging.getLogger("vipflow.tasks")
app = get_app()


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
