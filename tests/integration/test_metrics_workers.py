"""Metrics from two worker processes add up to the notifications sent.

Two separate ``vipflow worker`` processes, each with its own metrics port: one
with the threads pool (plain registry), one with the prefork pool and two
children (prometheus-client's multiprocess mode, summed by the parent's port).
The sum over both ports must match what the transaction records say happened,
and the ingestor's ``/metrics`` must count every notification it accepted.
"""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
import requests

from producers.sim.sender import random_notification
from producers.sim.wire import dumps
from tests.integration.harness import Stack, free_port, wait_until
from tests.integration.vipflow_worker import scrape, start_vipflow_worker, total
from worker.tokens import mint

pytestmark = pytest.mark.integration
N = 30


@pytest.mark.timeout(240)
def test_decisions_and_actions_summed_over_two_workers_match_the_records(redis_url: str) -> None:
    """30 notifications through a threads worker and a prefork worker: counts equal the records'."""
    stack = Stack(redis_url)
    workers = []
    try:
        stack.start_sim()
        stack.start_ingest()
        ports = [free_port(), free_port()]
        workers.append(start_vipflow_worker(stack, pool="threads", concurrency=2, metrics_port=ports[0]))
        workers.append(start_vipflow_worker(stack, pool="prefork", concurrency=2, metrics_port=ports[1]))
        assert stack.sim is not None
        stack.sim.faults({"latency_ms": 40})  # tasks take a while, so both workers get some
        rng = random.Random(7)
        sent = []
        for n in range(N):
            kind, body = random_notification(rng, ["deposit", "withdraw"])
            key = "TransactionId" if "TransactionId" in body else "transactionId"  # one id, in the body's casing
            body[key] = f"itmet{n:04d}"
            token = mint(stack.key, "op-it", "vip-api", 600)
            answer = requests.post(f"{stack.ingest_url}/vip/notify/{kind}", data=dumps(body), timeout=10,
                                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            assert answer.status_code == 200, answer.text
            sent.append(body[key])
        records = [stack.wait_state(t, ("approved", "review", "rejected", "failed"), 90) for t in sent]

        by_outcome = Counter((r["decision"]["ruleset"], r["decision"]["outcome"]) for r in records)
        approvals = sum(1 for r in records for a in r["actions"] if a["name"] == "approve" and a["status"] == "done")
        reviews = sum(1 for r in records for a in r["actions"] if a["name"] == "review" and a["status"] == "done")
        # The last action of a record is saved before the metric of the next one is counted: wait for the sums.
        def summed() -> list[dict[str, dict[tuple[tuple[str, str], ...], float]]] | None:
            scraped = [scrape(p) for p in ports]
            done = sum(total(s, "vipflow_decisions_total") for s in scraped) == N
            return scraped if done else None

        scraped = wait_until(summed, 15, "the decision counts to reach 30")
        for (ruleset, outcome), count in by_outcome.items():
            got = sum(total(s, "vipflow_decisions_total", ruleset=ruleset, outcome=outcome) for s in scraped)
            assert got == count, (ruleset, outcome, got, count)
        assert sum(total(s, "vipflow_actions_total", action="approve", result="approved")
                   for s in scraped) == approvals
        assert sum(total(s, "vipflow_actions_total", action="review", result="done") for s in scraped) == reviews
        split = [total(s, "vipflow_decisions_total") for s in scraped]
        assert min(split) > 0, f"one worker decided nothing (threads, prefork: {split})"
        assert sum(total(s, "vipflow_vip_call_seconds_count") for s in scraped) > 0
        assert total(scraped[0], "vipflow_queue_depth") == 0
        assert total(scraped[0], "vipflow_review_queue_size") == len({r["transaction_id"] for r in records
                                                                      if r["state"] == "review"})
        ingest = requests.get(stack.ingest_url + "/metrics", timeout=5).text
        accepted = sum(float(m.group(1)) for m in re.finditer(
            r'^vipflow_notifications_received_total\{[^}]*result="accepted"[^}]*\} (\S+)$', ingest, re.M))
        assert accepted == N
    finally:
        for w in workers:
            w.stop()
        stack.stop()
