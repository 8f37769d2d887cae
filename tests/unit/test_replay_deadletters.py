"""``vipflow replay --dlq``: the ledger's dead letters are queued again and marked requeued, never deleted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import redis

from rules import load_rulebook
from tests.conftest import FIXTURES, ROOT
from tests.fakes import BreakableWallet
from worker.config import Settings
from worker.errors import StoreError
from worker.ledger import Ledger, State
from worker.pipeline import Deps, process
from worker.reload import RuleHolder
from worker.replay import Stores, make_selection, requeue, select, stores
from worker.store.accounts import AccountCache
from worker.store.publisher import MemoryPublisher
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry

CARD = "7210695258"
PATRON = "P0001234"
PREFIX = "dl"
RULES = ROOT / "rules" / "default"
DLQ = make_selection(dlq=True)


@dataclass
class World:
    deps: Deps
    st: Stores
    vip: FakeVip
    wallet: BreakableWallet
    ledger: Ledger


@pytest.fixture
def world(redis_url: str, sqlite_url: str) -> Iterator[World]:
    client = redis.Redis.from_url(redis_url)
    ledger = Ledger.open(sqlite_url)
    body = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    vip = FakeVip({CARD: AccountInquiry.from_response(body)})
    wallet = BreakableWallet({PATRON: Decimal("100000.00")}, broken=True)
    st = stores(client, PREFIX, ledger, 30)
    deps = Deps(settings=Settings(), archive=st.archive, ledger=ledger, locks=st.locks,
                accounts=AccountCache(client, PREFIX, 300), velocity=VelocityStore(client, PREFIX), vip=vip,
                wallet=wallet, rules=RuleHolder(RULES, book=load_rulebook(RULES)), sleep=lambda s: None)
    yield World(deps, st, vip, wallet, ledger)
    client.close()
    ledger.engine.dispose()


def _dead_lettered(w: World, txid: str) -> str:
    """A withdrawal whose freeze crashed: a dead letter, and the transaction in review."""
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())
    body.update(transactionId=txid, amount="100.00", vipCardNumber=CARD, patronId=PATRON,
                maskedBankAccountNumber="**1111", bankRoutingNumber="22222222")
    entry = w.st.archive.append("withdraw", json.dumps(body).encode(), status="valid", transaction_id=txid,
                                error=None)
    process(entry, w.deps)
    assert [d.entry_id for d in w.ledger.dead_letters()] == [entry]
    return entry


def _state(w: World, txid: str) -> State:
    stored = w.ledger.load(txid)
    assert stored is not None
    return stored.record.state


def test_dlq_requeues_dead_letters_and_marks_them_requeued(world: World) -> None:
    """--dlq queues each dead letter's notification (read from the ledger: the buffer let it go) and marks
    the letter requeued: a second --dlq selects nothing, and the letter is still in the ledger."""
    entry = _dead_lettered(world, "wddl00001")
    assert world.st.archive.get(entry) is None and world.ledger.notification(entry) is not None
    publisher = MemoryPublisher()
    report = requeue(select(DLQ, world.st), world.st, publisher, from_dlq=True)
    assert publisher.published == [entry] and report.queued == 1 and report.already_final == 1
    assert world.ledger.dead_letters() == [] and world.ledger.dead_letter_count() == 0
    [kept] = world.ledger.dead_letters(include_requeued=True)
    assert kept.entry_id == entry and kept.requeued_at is not None
    assert list(select(DLQ, world.st).refs) == []
    process(entry, world.deps)  # the transaction waits for a person: the plain replay leaves it there
    assert _state(world, "wddl00001") == State.REVIEW
    assert world.vip.approvals.get("wddl00001", 0) == 0


def test_dlq_with_force_decides_the_failed_transaction_again_once(world: World) -> None:
    """--dlq --force re-decides a transaction that failed unexpectedly; once the wallet works it is approved
    once, and the dead letter stays in the ledger marked requeued."""
    entry = _dead_lettered(world, "wddl00002")
    world.wallet.broken = False
    publisher = MemoryPublisher()
    report = requeue(select(DLQ, world.st), world.st, publisher, force=True, actor="os:tester", from_dlq=True)
    assert report.redecided == ["wddl00002"] and report.already_final == 0
    for entry_id in publisher.published:
        process(entry_id, world.deps)
    assert _state(world, "wddl00002") == State.APPROVED
    assert world.vip.approvals["wddl00002"] == 1 and world.wallet.holds_created["wddl00002"] == 1
    assert [d.entry_id for d in world.ledger.dead_letters(include_requeued=True)] == [entry]


def test_a_failed_queueing_leaves_the_letter_for_the_next_replay(world: World) -> None:
    """When the broker refuses, the dead letter is not marked requeued: the next --dlq finds it again."""
    entry = _dead_lettered(world, "wddl00003")
    publisher = MemoryPublisher()
    publisher.fail = True
    with pytest.raises(StoreError, match="publisher is set to fail"):
        requeue(select(DLQ, world.st), world.st, publisher, from_dlq=True)
    assert [d.entry_id for d in world.ledger.dead_letters()] == [entry]
