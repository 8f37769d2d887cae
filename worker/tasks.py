"""The Celery task: thin. Parse the argument, run the pipeline, map errors to redelivery."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, signals

from worker.celery_app import TASK_NAME, get_app
from worker.errors import StoreError, WalletTransientError, reason
from worker.wording import plural

log = logging.getLogger("vipflow.tasks")
app = get_app()


def _json_logs(**_: Any) -> None:
    # Connecting here keeps Celery from installing its own handlers: every line is masked JSON.
    from worker.logs import configure_logging
    from worker.masking import operator_hosts

    configure_logging(app.vipflow_settings.log.level, hosts=operator_hosts(app.vipflow_settings))


def _check_can_work(**_: Any) -> None:
    # Before consuming anything (worker_init comes before the consumer starts): a configuration that
    # cannot work (worker.startup) and a ledger schema older than the code (naming `vipflow db upgrade`;
    # SQLite upgrades here) refuse the start instead of failing, and acknowledging, every task taken.
    from worker.errors import ConfigError, LedgerError, StoreError
    from worker.ledger import Ledger
    from worker.startup import EXIT_CANNOT_WORK, check_can_work

    try:
        check_can_work(app.vipflow_settings)  # rules naming lists read the ledger: it may fail below's way
    except ConfigError as exc:
        log.critical("cannot start: %s", exc)
        raise SystemExit(EXIT_CANNOT_WORK) from None
    except (LedgerError, StoreError) as exc:
        log.critical("cannot start: %s", exc)
        raise SystemExit(1) from None
    try:
        Ledger.open(app.vipflow_settings.database.url).close()
    except (LedgerError, ConfigError, StoreError) as exc:
        log.critical("cannot start: %s", exc)
        raise SystemExit(1) from None  # not an Exception: Celery's signal dispatch does not swallow it


def _warm_up(**_: Any) -> None:
    # Build the adapters and load the rules before the first task, and take SIGHUP for a rules
    # reload (Celery's own SIGHUP handler would restart the whole worker instead).
    from worker.bootstrap import process_deps
    from worker.reload import RuleHolder

    deps = process_deps(app.vipflow_settings)
    interval = app.vipflow_settings.rules.reload_interval_s
    if isinstance(deps.rules, RuleHolder):
        deps.rules.start(interval, sighup=True)
    if isinstance(deps.shadow, RuleHolder):
        from worker.shadow import start_reloading

        start_reloading(deps.shadow, interval, sighup=True)  # after the live one: SIGHUP reloads both
    if isinstance(deps.candidate, RuleHolder):
        from worker.shadow import start_reloading

        start_reloading(deps.candidate, interval, sighup=True)  # the rollout's candidate: SIGHUP reloads it too
    _start_recovery(deps)
    _settle_heap(deps)


def _settle_heap(deps: Any) -> None:
    # The ledger's connections are opened now, not by the first burst of tasks (the ledger being down
    # here is no reason to stop: each task reports it and is retried). Then everything built so far
    # (modules, rules, clients: most of the heap, long-lived) leaves the garbage collector's view
    # (gc.freeze): its full collections then walk only what tasks make, measured at about 0.1 ms of
    # worker CPU per notification under the end-to-end bench before.
    import gc

    from worker.errors import LedgerUnavailable

    try:
        deps.ledger.warm()
    except LedgerUnavailable as exc:
        log.warning("could not open the ledger's connections yet: %s", exc)
    gc.collect()
    gc.freeze()


_recoverer: Any = None


def _start_recovery(deps: Any) -> None:
    # Every worker runs the sweep; the lease lets one at a time work (worker.recovery). Here rather than in
    # `vipflow worker` alone, so that `celery -A worker worker` recovers too.
    global _recoverer
    from worker.recovery import Recoverer, Recovery
    from worker.store.publisher import CeleryPublisher

    settings = app.vipflow_settings
    if _recoverer is not None:
        return
    recovery = Recovery(deps.locks.redis, deps.locks.prefix, deps.archive, deps.ledger,
                        CeleryPublisher.from_settings(settings), queue=settings.worker.queue,
                        recover_after_s=settings.worker.recover_after_s,
                        ledger_window_s=settings.ledger.dedupe_window_s)
    _recoverer = Recoverer(recovery)
    _recoverer.start()


def _stop_recovery(**_: Any) -> None:
    if _recoverer is not None:
        _recoverer.stop()


_asked_to_stop: list[str] = []  # the signals that asked this worker to stop (SIGTERM, SIGINT, SIGQUIT)


def _asked(sig: str = "", **_: Any) -> None:
    _asked_to_stop.append(str(sig))


def _failed_unless_asked(sender: Any = None, **_: Any) -> None:
    # A worker that stops without being asked (no shutdown signal) stopped on an error, whatever exit code
    # Celery chose: exit 1, so that a supervisor restarting on failure (systemd Restart=on-failure) restarts
    # it instead of leaving it down. Celery's own "Unrecoverable error" path (a Redis out of memory, a
    # MemoryError in a task) already says 1; a path that ends with code 0 or none does not.
    code = getattr(sender, "exitcode", None)
    if not _asked_to_stop and not code and sender is not None:
        log.critical("the worker stopped without being asked to (exit code %r); exiting with 1", code)
        sender.exitcode = 1


signals.setup_logging.connect(_json_logs, weak=False)
signals.worker_init.connect(_check_can_work, weak=False)
signals.worker_ready.connect(_warm_up, weak=False)
signals.worker_shutdown.connect(_stop_recovery, weak=False)
signals.worker_shutting_down.connect(_asked, weak=False)
signals.worker_shutdown.connect(_failed_unless_asked, weak=False)


@app.task(  # type: ignore[untyped-decorator]  # celery ships no type hints
    name=TASK_NAME,
    bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def process_notification(self: Task, archive_entry_id: str) -> None:
    """Decide and act on one archived notification (see ``worker.pipeline.process``)."""
    import redis

    from worker.bootstrap import process_deps
    from worker.deliveries import RETRIES_EXHAUSTED, UNEXPECTED_ERROR
    from worker.metrics import RETRIES
    from worker.pipeline import process

    settings = self.app.vipflow_settings
    entry_id = str(archive_entry_id)
    try:
        deps = process_deps(settings)
    except Exception as exc:  # noqa: BLE001 - whatever it is, the task must not end acknowledged
        # Without its adapters the task can record nothing, not even a dead letter: it must not end
        # (an acknowledged task would leave the notification only in the intake buffer's pending set).
        # Sent again, to whichever worker can take it; the start-up check makes this rare.
        delay = min(2 ** self.request.retries, 30)
        log.error("cannot build the worker's adapters (%s); the notification is queued again", reason(exc),
                  extra={"entry_id": entry_id, "error": type(exc).__name__, "retry_in_s": delay})
        raise _again(self, exc, delay) from None
    try:
        process(entry_id, deps)
    except (StoreError, redis.RedisError, WalletTransientError) as exc:
        # Nothing is lost: the entry stays pending in the archive and every step is recorded.
        retries = self.request.retries
        if retries >= settings.worker.max_retries:
            _give_up(deps, entry_id, f"{reason(exc)} after {plural(retries + 1, 'attempt')}",
                     retries + 1, RETRIES_EXHAUSTED)
            return
        delay = min(2 ** retries, 30)
        log.warning("retrying", extra={"entry_id": entry_id, "error": type(exc).__name__,
                                       "retry_in_s": delay})
        RETRIES.labels("task").inc()
        raise _again(self, exc, delay) from None
    except Exception as exc:
        # Outside the pipeline's own net (e.g. the time limit): never retried blindly, never lost.
        log.exception("unexpected error in the task", extra={"entry_id": entry_id})
        _give_up(deps, entry_id, f"unexpected {type(exc).__name__} in the task", self.request.retries + 1,
                 UNEXPECTED_ERROR)


# Publishing a retry waits out a short broker outage (a Redis restart) rather than fail at once: ~3.5 s.
_RETRY_PUBLISH = {"max_retries": 3, "interval_start": 0.5, "interval_step": 1.0, "interval_max": 2.0}


def _again(task: Task, exc: Exception, delay: float) -> BaseException:
    """The exception that sends this delivery round again in ``delay`` seconds (Celery's Retry). When the
    retry message cannot be published even after ``_RETRY_PUBLISH`` (Redis down), Celery would reject the
    message without requeueing it, dropping the notification's only message: it is requeued instead, and if
    even that cannot reach Redis the message stays unacknowledged and the recovery sweep queues the
    notification again (``worker.recovery``): a store error never ends in a dropped notification."""
    from celery.exceptions import Reject

    try:
        again: BaseException = task.retry(exc=exc, countdown=delay, retry=True, retry_policy=_RETRY_PUBLISH)
    except Reject as lost:
        log.error("the retry could not be queued (%s); the message goes back on the queue", reason(lost.reason),
                  extra={"entry_id": str(task.request.args[0]) if task.request.args else None})
        again = Reject(lost.reason, requeue=True)
    return again


def _give_up(deps: Any, entry_id: str, error: str, attempts: int, reason: str) -> None:
    from worker.deliveries import give_up

    try:
        give_up(entry_id, archive=deps.archive, ledger=deps.ledger, locks=deps.locks, error=error,
                attempts=attempts, reason=reason, lock_wait_s=min(deps.settings.worker.lock_ttl_s, 30))
    except Exception:
        # Neither the ledger nor Redis can take the dead letter: the entry stays pending; the recovery sweep
        # queues it again (worker.recovery).
        log.exception("could not dead-letter; the entry stays pending and the recovery sweep queues it again",
                      extra={"entry_id": entry_id})
        raise
