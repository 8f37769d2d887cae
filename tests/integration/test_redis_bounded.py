"""Redis is the hot path only: after 10,000 decided transactions and the dedupe window, only velocity
entries and the queue are left (the ledger holds everything else)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import redis

from rules import load_rulebook
from tests.conftest import FIXTURES, ROOT
from worker.celery_app import create_celery
from worker.config import RedisSettings, Settings
from worker.drain import drain_once
from worker.ledger import Ledger, State
from worker.notification import parse_notification
from worker.pipeline import Deps, process
from worker.reload import RuleHolder
from worker.store import keys
from worker.store.accounts import AccountCache
from worker.store.archive import Archive
from worker.store.intake import Intake
from worker.store.locks import Locks
from worker.store.taskmessage import TaskMessages, read_task
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry
from worker.wallet.fake import InMemoryWallet

pytestmark = pytest.mark.integration
PREFIX, QUEUE, COUNT, CARDS = "rb", "rbq", 10_000, 200
WINDOW_S = Settings().ledger.dedupe_window_s


def _entry_id(message: bytes) -> str:
    """The archive entry id inside one Celery task message, as a worker would read it."""
    task = read_task(message)
    assert task is not None
    return str(task[1][0])


def _footprint(client: redis.Redis, after_s: float) -> dict[str, int]:
    """Keys left ``after_s`` seconds from now, judged by each key's own time to live (the clock moved,
    not slept): a key whose lifetime ends before then is gone. Key -> its length or -1."""
    left: dict[str, int] = {}
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        ttl_ms = int(client.pttl(key))
        if ttl_ms == -2 or 0 <= ttl_ms <= after_s * 1000:
            continue  # gone by then
        left[key] = ttl_ms
    return left


@pytest.mark.timeout(600)
def test_after_the_dedupe_window_redis_holds_only_velocity_and_the_queue(redis_url: str, ledger: Ledger) -> None:
    """10,000 deposits and withdrawals through intake and the pipeline; after the drain and the dedupe
    window, every key left is a velocity key or the (empty) queue, and the ledger has all 10,000."""
    client = redis.Redis.from_url(redis_url)
    account = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    cards = [f"72{i:08d}" for i in range(CARDS)]
    vip = FakeVip({c: AccountInquiry.from_response(account) for c in cards})
    wallet = InMemoryWallet({f"P{i:07d}": Decimal("1000000.00") for i in range(CARDS)})
    book = load_rulebook(ROOT / "rules" / "default")
    deps = Deps(settings=Settings(), archive=Archive(client, PREFIX), ledger=ledger,
                locks=Locks(client, PREFIX, 30), accounts=AccountCache(client, PREFIX, 300),
                velocity=VelocityStore(client, PREFIX), vip=vip, wallet=wallet,
                rules=RuleHolder(ROOT / "rules" / "default", book=book), sleep=lambda s: None)
    messages = TaskMessages(create_celery(Settings(redis=RedisSettings(url=redis_url))), QUEUE)
    intake = Intake(client, PREFIX, messages=messages, queue=QUEUE, retention_ms=WINDOW_S * 1000)
    deposit = json.loads((FIXTURES / "vip-connect" / "deposit-approval-request.json").read_text())
    withdraw = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())
    for i in range(COUNT):
        card, patron = cards[i % CARDS], f"P{i % CARDS:07d}"
        if i % 2:
            kind, body = "withdraw", {**withdraw, "transactionId": f"rbw{i:07d}", "amount": "25.00",
                                      "vipCardNumber": card, "patronId": patron}
        else:
            kind, body = "deposit", {**deposit, "TransactionId": f"rbd{i:07d}", "Amount": "20.00",
                                     "VipCardNumber": card, "PatronId": patron}
        raw = json.dumps(body).encode()
        assert intake.accept(kind, raw, parse_notification(body, kind), None).status == "accepted"
        message = client.rpop(QUEUE)  # what a worker takes from Celery's queue
        assert message is not None
        rec = process(_entry_id(message), deps)
        assert rec is not None and rec.state in (State.APPROVED, State.REVIEW)
    assert drain_once(client, deps.archive, ledger, PREFIX) == 0  # the tasks already moved their own

    left = _footprint(client, WINDOW_S + 1)
    assert not [k for k in left if not keys.is_velocity(k, PREFIX) and k != QUEUE], sorted(left)[:10]
    assert client.llen(QUEUE) == 0
    assert not client.exists(keys.archive(PREFIX), keys.pending(PREFIX))
    with ledger.engine.connect() as conn:
        from sqlalchemy import func, select

        from worker.ledger import tables

        assert conn.execute(select(func.count()).select_from(tables.transactions)).scalar_one() == COUNT
        assert conn.execute(select(func.count()).select_from(tables.notification_done)).scalar_one() == COUNT
    info: dict[str, Any] = client.info("memory")
    print(f"\nredis after {COUNT} transactions: {client.dbsize()} keys, {info['used_memory_human']} used; "
          f"after the dedupe window: {len(left)} keys, all velocity")
    client.close()
