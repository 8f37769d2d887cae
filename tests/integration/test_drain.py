"""The drain moves the Redis intake buffer into the ledger, so Redis keeps only what is not yet there."""

from __future__ import annotations

import pytest
import redis

from worker.drain import drain_once
from worker.ledger import Ledger
from worker.store import keys
from worker.store.archive import Archive

pytestmark = pytest.mark.integration


def test_a_pending_entry_is_left_to_its_task_for_a_while(redis_url: str, ledger: Ledger) -> None:
    """An invalid entry is moved at once; a valid one whose task has not run yet is left in the stream
    (its task copies it) until it is older than the drain's patience."""
    client = redis.Redis.from_url(redis_url)
    archive = Archive(client, "dr")
    valid = archive.append("deposit", b"{}", status="valid", transaction_id="drtx2", error=None)
    archive.append("deposit", b"{", status="invalid", transaction_id=None, error="x")
    assert drain_once(client, archive, ledger, "dr") == 1
    assert [e.entry_id for e in archive.iter_range()] == [valid] and ledger.notification(valid) is None
    client.close()


def test_every_buffered_entry_reaches_the_ledger_and_leaves_the_stream(redis_url: str, ledger: Ledger) -> None:
    """Valid and invalid entries are all kept in the ledger as received and the stream key goes; a valid
    entry whose task has not finished stays pending (and is found by replay in the ledger)."""
    client = redis.Redis.from_url(redis_url)
    archive = Archive(client, "dr")
    valid = archive.append("deposit", b'{"TransactionId":"drtx00001"}', status="valid", transaction_id="drtx00001",
                           error=None, route="/vip/notify/deposit")
    invalid = archive.append("withdraw", b"{", status="invalid", transaction_id=None, error="body: not JSON",
                             route="/vip/notify/withdraw")
    assert drain_once(client, archive, ledger, "dr", leave_pending_s=0) == 2
    assert not client.exists(keys.archive("dr"))
    kept = ledger.notification(invalid)
    assert kept is not None and kept.body == b"{" and kept.error == "body: not JSON"
    assert kept.route == "/vip/notify/withdraw"
    assert [n.entry_id for n in ledger.unprocessed()] == [valid]  # its task has not finished
    assert archive.pending_ids() == {valid}
    client.close()


def test_a_second_drainer_waits_for_the_lease(redis_url: str, ledger: Ledger) -> None:
    """While one worker holds the drain's lease, another moves nothing."""
    client = redis.Redis.from_url(redis_url)
    archive = Archive(client, "dr")
    archive.append("deposit", b"{}", status="invalid", transaction_id=None, error="x")
    client.set(keys.drain_lease("dr"), "someone", px=10_000)
    assert drain_once(client, archive, ledger, "dr") == 0
    assert client.xlen(keys.archive("dr")) == 1
    client.close()
