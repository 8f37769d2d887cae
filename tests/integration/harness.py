"""The shared integration harness: a real simulator, ingestor and Celery worker, as processes.

``Stack`` starts them on free ports against one Redis database with a key
prefix of its own, sends notifications through the ingestor over HTTP (JWT
signed with SecretKey1, as VIP Connect may), waits for records, and can SIGKILL
the worker to prove redelivery. Reused by other integration tests.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import redis
import requests

from producers.sim.server import SimProcess, start_simulator
from worker.ledger import Ledger
from worker.ledger.events import Event
from worker.tokens import mint


def simulator(key: str, operator: str) -> Iterator[SimProcess]:
    """A simulator process verifying tokens signed with ``key`` for ``operator``, stopped at the end
    (for a module fixture: ``yield from simulator(KEY, OPERATOR)``)."""
    proc = start_simulator({"VIPFLOW_VIP__SECRET_KEY1": key, "VIPFLOW_VIP__OPERATOR_ID": operator})
    try:
        yield proc
    finally:
        proc.stop()

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str, poll_s: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except (requests.RequestException, redis.RedisError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(poll_s)


class Proc:
    """A child process whose stderr (and stdout) lines are kept for waiting and for failure reports."""

    def __init__(self, cmd: list[str], env: dict[str, str]):
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> bool:
        """True once any output line contains ``text``."""
        return any(text in line for line in list(self.lines))

    def kill(self) -> None:
        """SIGKILL the process group at once: no cleanup, no acknowledgement."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._close()

    def _close(self) -> None:
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go within 15 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()


class Stack:
    """Simulator + ingestor + worker on one Redis db; see the module docstring."""

    def __init__(self, redis_url: str, database_url: str | None = None, **env_overrides: str):
        self.redis_url = redis_url
        self.prefix = "it" + secrets.token_hex(4)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if database_url is None:  # a ledger of its own: an SQLite file in a fresh folder
            self._tmp = tempfile.TemporaryDirectory(prefix="vipflow-it-")
            database_url = f"sqlite:///{self._tmp.name}/ledger.db"
        self.database_url = database_url
        self.key = secrets.token_bytes(32)
        self.env: dict[str, str] = {
            **os.environ,
            "VIPFLOW_REDIS__URL": redis_url,
            "VIPFLOW_REDIS__KEY_PREFIX": self.prefix,
            "VIPFLOW_DATABASE__URL": database_url,
            "VIPFLOW_VIP__OPERATOR_ID": "op-it",
            "VIPFLOW_VIP__SECRET_KEY1": base64.b64encode(self.key).decode(),
            "VIPFLOW_VIP__BACKOFF_BASE_S": "0.05",
            "VIPFLOW_VIP__BACKOFF_MAX_S": "0.2",
            "VIPFLOW_VIP__TIMEOUT_S": "3",
            "VIPFLOW_INGEST__AUTH__ISSUER": "op-it",
            "VIPFLOW_WORKER__QUEUE": self.prefix,
            "VIPFLOW_WORKER__CONCURRENCY": "4",
            "VIPFLOW_WORKER__LOCK_TTL_S": "5",
            "VIPFLOW_WORKER__VISIBILITY_TIMEOUT_S": "60",
            "VIPFLOW_LOG__LEVEL": "INFO",
            **env_overrides,
        }
        self.env.pop("VIPFLOW_CONFIG", None)
        self.sim: SimProcess | None = None
        self.ingest: Proc | None = None
        self.ingest_url = ""
        self.worker: Proc | None = None
        self.web: Proc | None = None
        self.web_url = ""
        self.redis = redis.Redis.from_url(redis_url)
        self.ledger = Ledger.open(database_url)

    def start_sim(self) -> SimProcess:
        """Start the VIP + wallet simulator; the worker and ingestor are pointed at it."""
        self.sim = start_simulator(self.env)
        self.env["VIPFLOW_VIP__BASE_URL"] = self.sim.vip_url
        self.env["VIPFLOW_WALLET__URL"] = self.sim.wallet_url
        return self.sim

    def start_ingest(self, timeout_s: float = 20) -> str:
        """Start ``vipflow ingest`` on a free port and wait for /readyz."""
        port = free_port()
        self.ingest = Proc([sys.executable, "-m", "producers", "ingest", "--port", str(port)], self.env)
        self.ingest_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(self.ingest_url + "/readyz", timeout=1).ok, timeout_s,
                   "the ingestor's /readyz")
        return self.ingest_url

    def start_web(self, timeout_s: float = 20) -> str:
        """Start ``vipflow web`` (the operator site's API) on a free port and wait for /healthz."""
        port = free_port()
        self.web = Proc([sys.executable, "-m", "producers", "web", "--port", str(port)], self.env)
        self.web_url = f"http://127.0.0.1:{port}"
        web = self.web
        wait_until(lambda: web.process.poll() is not None or requests.get(self.web_url + "/healthz", timeout=1).ok,
                   timeout_s, "vipflow web's /healthz")
        assert web.process.poll() is None, "\n".join(web.lines[-30:])
        return self.web_url

    def start_worker(self, timeout_s: float = 30) -> Proc:
        """Start a real Celery worker (``celery -A worker worker``) and wait until it is ready."""
        name = f"w{secrets.token_hex(3)}@%h"
        self.worker = Proc([sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads",
                            "--concurrency", self.env["VIPFLOW_WORKER__CONCURRENCY"], "-Q", self.prefix,
                            "-n", name, "--without-gossip", "--without-mingle", "--without-heartbeat"],
                           self.env)
        worker = self.worker
        wait_until(lambda: worker.saw(" ready.") or worker.process.poll() is not None, timeout_s,
                   "the Celery worker to be ready")
        assert worker.process.poll() is None, "\n".join(worker.lines[-30:])
        return worker

    def kill_worker(self) -> None:
        """SIGKILL the worker in the middle of whatever it does."""
        assert self.worker is not None
        self.worker.kill()

    def notify(self, kind: str, body: dict[str, Any]) -> requests.Response:
        """POST a notification to the ingestor, signed as VIP Connect would."""
        token = mint(self.key, "op-it", "vip-api", 600)
        return requests.post(f"{self.ingest_url}/vip/notify/{kind}", data=json.dumps(body),
                             headers={"Authorization": f"Bearer {token}",
                                      "Content-Type": "application/json"}, timeout=10)

    def record(self, transaction_id: str) -> dict[str, Any] | None:
        """The transaction record as the ledger holds it (JSON-ready), or None."""
        stored = self.ledger.load(transaction_id)
        return None if stored is None else stored.record.to_dict()

    def events(self, transaction_id: str) -> list[Event]:
        """The transaction's events in the ledger, in order."""
        return self.ledger.events(transaction_id)

    def wait_state(self, transaction_id: str, states: tuple[str, ...], timeout_s: float = 30) -> dict[str, Any]:
        """Wait until the record reaches one of ``states``; the record."""
        def reached() -> dict[str, Any] | None:
            rec = self.record(transaction_id)
            return rec if rec is not None and rec["state"] in states else None

        try:
            return wait_until(reached, timeout_s, f"{transaction_id} to reach {states}")
        except AssertionError:
            tail = "\n".join(self.worker.lines[-40:]) if self.worker else ""
            raise AssertionError(f"{transaction_id}: {self.record(transaction_id)}\n{tail}") from None

    def stop(self) -> None:
        """Stop every process started; leave Redis to the redis_url fixture."""
        for proc in (self.worker, self.ingest, self.web):
            if proc is not None:
                proc.stop()
        if self.sim is not None:
            self.sim.stop()
            if self.sim.process.stdout is not None:
                self.sim.process.stdout.close()
        self.redis.close()
        self.ledger.engine.dispose()
        if self._tmp is not None:
            self._tmp.cleanup()


@contextmanager
def running_stack(redis_url: str, database_url: str | None = None, **env: str) -> Iterator[Stack]:
    """Simulator, ingestor and worker, stopped afterwards whatever happens."""
    stack = Stack(redis_url, database_url, **env)
    try:
        stack.start_sim()
        stack.start_ingest()
        stack.start_worker()
        yield stack
    finally:
        stack.stop()
