"""The Celery application, configured for money.

Late acknowledgement with requeue when a worker process dies, prefetch of one,
and a broker visibility timeout longer than any task or retry delay: a task is
acknowledged only after it finished, and one whose worker vanished is
delivered again (the task itself is idempotent, see ``worker.pipeline``).
"""

from __future__ import annotations

from celery import Celery

from worker.config import Settings, load_settings
from worker.store.broker import transport_name
from worker.store.connection import broker_options, broker_url

TASK_NAME = "vipflow.process_notification"


def broker_retries(timeout_s: float) -> int:
    """How many of Celery's broker reconnection attempts fit in ``timeout_s`` seconds (at least 1).

    Celery (kombu's ``ensure_connection``) pauses 2, 4, 6 ... 30, 30 ... seconds between attempts and
    gives up after ``broker_connection_max_retries``; the worker then stops with exit code 1. Its
    default, 100, is most of an hour of silence to a supervisor.
    """
    waited, retries = 0.0, 0
    while True:
        pause = min(2.0 + 2.0 * retries, 30.0)
        if waited + pause > timeout_s:
            return max(retries, 1)
        waited += pause
        retries += 1


def create_celery(settings: Settings) -> Celery:
    """A Celery app on the configured Redis, with the money-safe delivery settings."""
    # With redis.sentinels: kombu's Sentinel transport, which asks the sentinels for the master again
    # whenever the connection is lost, so a worker follows a failover (``worker.store.connection``).
    app = Celery("vipflow", broker=broker_url(settings.redis), include=["worker.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.worker.queue,
        task_time_limit=settings.worker.task_time_limit_s,
        task_soft_time_limit=max(settings.worker.task_time_limit_s - 10, 5),
        # kombu's transports with a fix for a connection lost while tasks are in flight (worker.store.broker).
        broker_transport=transport_name(bool(settings.redis.sentinels)),
        broker_connection_retry_on_startup=True,
        # Bounded: a worker that cannot reach Redis exits (code 1) for its supervisor to see.
        broker_connection_max_retries=broker_retries(settings.worker.broker_connect_timeout_s),
        broker_transport_options={
            "visibility_timeout": settings.worker.visibility_timeout_s,
            # Look for tasks whose worker died every 10 s (kombu >= 5.5 otherwise scans only every
            # 10th sweep, ~100 s): a task then comes back soon after its visibility timeout.
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
            **broker_options(settings.redis),
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    app.vipflow_settings = settings
    return app


_app: Celery | None = None


def get_app() -> Celery:
    """The process's Celery app, built once from the configuration ($VIPFLOW_CONFIG)."""
    global _app
    if _app is None:
        _app = create_celery(load_settings())
    return _app
