"""Putting an archived notification on the work queue: the Celery task message.

A ``Publisher`` takes an archive entry id and enqueues the task that decides
it. The real one sends ``vipflow.process_notification`` through Celery with no
retry, so that a broken broker fails in milliseconds (the ingestor answers 503
and VIP Connect tries again) instead of holding the request open.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

from worker.errors import StoreError, reason

if TYPE_CHECKING:
    from celery import Celery

    from worker.config import Settings


class Publisher(Protocol):
    """Enqueue the task for one archive entry; raise StoreError when it could not be queued."""

    def publish(self, archive_entry_id: str) -> None:
        """Queue ``process_notification(archive_entry_id)``."""


class CeleryPublisher:
    """Sends the task through a Celery app built from the configuration."""

    def __init__(self, app: Celery, queue: str):
        from worker.celery_app import TASK_NAME

        self._app = app
        self._queue = queue
        self._task = TASK_NAME

    @classmethod
    def from_settings(cls, settings: Settings) -> CeleryPublisher:
        """A publisher on the configured broker that fails fast when the broker is down."""
        from worker.celery_app import create_celery

        app = create_celery(settings)
        # No connection retries: Celery's defaults would retry for seconds.
        app.conf.broker_transport_options = {
            **app.conf.broker_transport_options,
            "max_retries": 0,
            "socket_connect_timeout": 1,
            "socket_timeout": 2,
        }
        app.conf.broker_connection_timeout = 1
        return cls(app, settings.worker.queue)

    def publish(self, archive_entry_id: str) -> None:
        """Send the task message; StoreError when the broker refused or could not be reached."""
        try:
            self._app.send_task(
                self._task, args=[archive_entry_id], kwargs={}, queue=self._queue, retry=False
            )
        except Exception as exc:  # noqa: BLE001 (kombu and redis raise many types; all mean "not queued")
            raise StoreError(
                f"cannot queue the notification: the broker failed ({reason(exc)}); "
                "check that Redis is up"
            ) from None


class MemoryPublisher:
    """A publisher that remembers what it was given; ``fail`` makes it refuse (for tests)."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self.fail = False
        self._lock = threading.Lock()

    def publish(self, archive_entry_id: str) -> None:
        """Record the entry id, or raise StoreError when told to fail."""
        if self.fail:
            raise StoreError("cannot queue the notification: the publisher is set to fail")
        with self._lock:
            self.published.append(archive_entry_id)
