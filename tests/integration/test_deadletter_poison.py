"""A notification whose processing keeps killing its worker ends in the dead-letter list, not in a loop.

The worker is ``vipflow worker --pool prefork --concurrency 1`` with
``worker.max_deliveries: 2``. While the pool child is inside the account inquiry
(the simulator holds it open) the test SIGKILLs that child, twice; Celery gives
the unacknowledged task back at once each time. The third delivery is past the
limit: it is dead-lettered with its attempt count, the transaction goes to
review undecided, the task is acknowledged, and nothing more happens.
"""

from __future__ import annotations

import os
import signal
import time
from decimal import Decimal

import pytest

from producers.sim.patrons import PREFERRED_GOOD
from producers.sim.sender import build_notification
from tests.integration.harness import Stack, free_port, wait_until
from tests.integration.vipflow_worker import alive, children, scrape, start_vipflow_worker, total

pytestmark = pytest.mark.integration
TXID = "itpoison01"


@pytest.mark.timeout(180)
def test_poison_notification_is_dead_lettered_after_the_configured_deliveries(redis_url: str) -> None:
    """Two child deaths mid-task, then the third delivery: one dead letter (3 attempts), review, no approval."""
    stack = Stack(redis_url, VIPFLOW_WORKER__MAX_DELIVERIES="2", VIPFLOW_VIP__TIMEOUT_S="60")
    worker = None
    try:
        sim = stack.start_sim()
        stack.start_ingest()
        sim.faults({"hang_ms": 45000, "scripted": [
            {"vip_card_number": PREFERRED_GOOD.vip_card_number, "endpoint": "account",
             "responses": ["timeout"] * 4}]})
        port = free_port()
        worker = start_vipflow_worker(stack, pool="prefork", concurrency=1, metrics_port=port)
        body = build_notification(PREFERRED_GOOD, "deposit", Decimal("50.00"), transaction_id=TXID)
        assert stack.notify("deposit", body).status_code == 200
        counted = f"{stack.prefix}:deliveries:{TXID}"  # counted with the lock, before any work
        for delivery in (1, 2):
            wait_until(lambda d=delivery: int(stack.redis.hget(counted, "n") or 0) == d, 30,  # type: ignore[misc]
                       f"delivery {delivery}")
            wait_until(lambda d=delivery: sim.stats()["calls"].get("account_lookup", 0) >= d, 15,  # type: ignore[misc]
                       "the worker to be inside the account inquiry")
            pool = children(worker.process.pid)
            assert pool, "no pool child to kill"
            for pid in pool:
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda p=pool: not any(alive(x) for x in p), 10, "the child to die")  # type: ignore[misc]
        rec = stack.wait_state(TXID, ("review", "approved", "rejected"), timeout_s=60)
        assert rec["state"] == "review" and rec["deliveries"] == 3 and rec["decision"] is None
        assert "delivered 3 times" in rec["review_reason"]
        letters = stack.ledger.dead_letters()
        assert [(d.transaction_id, d.attempts) for d in letters] == [(TXID, 3)]
        events = stack.events(TXID)
        assert [e.data for e in events if e.kind == "delivered"] == [{"deliveries": 3}]
        assert "dead_letter" in [e.kind for e in events] and events[-1].kind == "review"
        assert sim.stats()["approvals"].get(TXID) is None
        time.sleep(3)  # acknowledged: no fourth delivery, nothing left queued
        assert stack.record(TXID)["deliveries"] == 3  # type: ignore[index]
        assert stack.redis.llen(stack.prefix) == 0
        metrics = scrape(port)
        assert total(metrics, "vipflow_dead_letters_total", reason="max_deliveries") == 1
        assert total(metrics, "vipflow_dead_letter_list_size") == 1
    finally:
        if worker is not None:
            worker.stop()
        stack.stop()
