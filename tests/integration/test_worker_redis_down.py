"""A worker whose Redis is down, or goes away, gives up within worker.broker_connect_timeout_s and exits 1,
saying so in one line: a supervisor sees a failed process instead of a hundred silent retries."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import pytest

from producers.embedded_redis import start_embedded
from tests.integration.harness import Proc, free_port, wait_until
from worker.celery_app import broker_retries

pytestmark = pytest.mark.integration


def _worker(redis_url: str, tmp_path: Path, timeout_s: int) -> Proc:
    env = {**os.environ,
           "VIPFLOW_REDIS__URL": redis_url,
           "VIPFLOW_DATABASE__URL": f"sqlite:///{tmp_path / 'ledger.db'}",
           "VIPFLOW_WORKER__METRICS_PORT": "off",
           "VIPFLOW_WORKER__QUEUE": "redis-down",
           # A configuration that can work otherwise: only Redis is missing (worker.startup checks the rest first).
           "VIPFLOW_VIP__OPERATOR_ID": "op-redis-down",
           "VIPFLOW_VIP__SECRET_KEY1": base64.b64encode(b"k" * 32).decode(),
           "VIPFLOW_WORKER__BROKER_CONNECT_TIMEOUT_S": str(timeout_s)}
    return Proc([sys.executable, "-m", "producers", "worker", "--concurrency", "1"], env)


def test_a_worker_pointed_at_a_closed_port_exits_1_after_the_timeout(tmp_path: Path) -> None:
    """Nothing listens on the port: warnings while it tries, then one line naming Redis, and exit code 1."""
    port = free_port()  # bound and closed again: nothing listens there
    worker = _worker(f"redis://:hunter2@127.0.0.1:{port}/0", tmp_path, timeout_s=2)
    try:
        code = wait_until(lambda: worker.process.poll() is not None and (worker.process.returncode,), 30,
                          "the worker to give up on Redis")
    finally:
        worker.stop()
    assert code == (1,), "\n".join(worker.lines[-20:])
    assert worker.saw("does not answer (ConnectionError); trying again")
    assert worker.lines[-1] == (f"vipflow: Redis at redis://:***@127.0.0.1:{port}/0 (database 0) did not answer "
                                "within 2 s (ConnectionError); start it or fix redis.url "
                                "(worker.broker_connect_timeout_s sets the wait)")
    assert not worker.saw("hunter2")


def test_a_worker_that_loses_its_redis_exits_1_within_the_bound(tmp_path: Path) -> None:
    """Redis stops under a ready worker: Celery retries broker_retries(3) times, then the worker exits 1."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    server = start_embedded(url)
    worker = _worker(url, tmp_path, timeout_s=3)
    try:
        wait_until(lambda: worker.saw(" ready.") or worker.process.poll() is not None, 40, "the worker to be ready")
        assert worker.process.poll() is None, "\n".join(worker.lines[-30:])
        assert worker.saw("exits after 3 s without Redis") and worker.saw("metrics off (worker.metrics_port is off)")
        server.stop()
        code = wait_until(lambda: worker.process.poll() is not None and (worker.process.returncode,), 60,
                          "the worker to exit after losing Redis")
    finally:
        worker.stop()
        server.stop()
    assert code == (1,), "\n".join(worker.lines[-20:])
    assert worker.saw(f"({broker_retries(3)}/{broker_retries(3)})")  # Celery's own count, bounded
    assert worker.lines[-1] == (f"vipflow: the worker stopped: Redis at {url} (database 0) did not answer for "
                                "worker.broker_connect_timeout_s (3 s); start it or fix redis.url, then start the "
                                "worker again")
