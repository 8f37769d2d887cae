"""``vipflow replay --dlq``: per dead letter what was done; a letter stays open until its transaction is final,
and in the ledger after that."""

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
from worker.replay import Stores, make_selection, stores
from worker.replay_dlq import LEFT_IN_REVIEW, MISSING, REDECIDED, REQUEUED, DlqReport, replay_dead_letters
from worker.review_service import reject
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


def _archive(w: World, txid: str) -> str:
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())
    body.update(transactionId=txid, amount="100.00", vipCardNumber=CARD, patronId=PATRON,
                maskedBankAccountNumber="**1111", bankRoutingNumber="22222222")
    return w.st.archive.append("withdraw", json.dumps(body).encode(), status="valid", transaction_id=txid,
                               error=None)


def _dead_lettered(w: World, txid: str) -> str:
    """A withdrawal whose freeze crashed: a dead letter, and the transaction in review."""
    entry = _archive(w, txid)
    process(entry, w.deps)
    assert [d.entry_id for d in w.ledger.dead_letters()] == [entry]
    return entry


def _state(w: World, txid: str) -> State:
    stored = w.ledger.load(txid)
    assert stored is not None
    return stored.record.state


def _results(report: DlqReport) -> list[tuple[str | None, str]]:
    return [(o.transaction_id, o.result) for o in report.outcomes]


def test_a_dead_letter_in_review_is_left_there_and_kept(world: World) -> None:
    """A plain --dlq queues nothing for a transaction the dead letter sent to review (the worker would leave
    it there), says so, and the letter stays open; a second --dlq says the same."""
    entry = _dead_lettered(world, "wddl00001")
    assert world.st.archive.get(entry) is None and world.ledger.notification(entry) is not None
    publisher = MemoryPublisher()
    report = replay_dead_letters(DLQ, world.st, publisher)
    assert _results(report) == [("wddl00001", LEFT_IN_REVIEW)] and publisher.published == []
    [outcome] = report.outcomes
    assert outcome.state == "review" and "vipflow review approve|reject wddl00001" in outcome.message
    assert [d.entry_id for d in world.ledger.dead_letters()] == [entry] and world.ledger.dead_letter_count() == 1
    assert _results(replay_dead_letters(DLQ, world.st, publisher)) == [("wddl00001", LEFT_IN_REVIEW)]


def test_dlq_with_force_decides_the_failed_transaction_again_once(world: World) -> None:
    """--dlq --force re-decides a transaction that failed unexpectedly; once the wallet works it is approved
    once, and its dead letter is closed (the transaction is final) but stays in the ledger, re-queued."""
    entry = _dead_lettered(world, "wddl00002")
    world.wallet.broken = False
    publisher = MemoryPublisher()
    report = replay_dead_letters(DLQ, world.st, publisher, force=True, actor="os:tester")
    assert _results(report) == [("wddl00002", REDECIDED)] and publisher.published == [entry]
    assert world.ledger.dead_letters() != []  # open until the worker has finished it
    for entry_id in publisher.published:
        process(entry_id, world.deps)
    assert _state(world, "wddl00002") == State.APPROVED
    assert world.vip.approvals["wddl00002"] == 1 and world.wallet.holds_created["wddl00002"] == 1
    assert world.ledger.dead_letters() == [] and world.ledger.dead_letter_count() == 0
    [kept] = world.ledger.dead_letters(include_closed=True)
    assert (kept.entry_id, kept.state) == (entry, "approved") and kept.requeued_at is not None
    again = replay_dead_letters(DLQ, world.st, publisher)
    assert (again.outcomes, again.closed_before) == ([], 1)


def test_an_unfinished_transaction_is_requeued_and_its_letter_kept_until_final(world: World) -> None:
    """A letter whose transaction never finished (here: no record at all) is re-queued, and stays open
    until the worker has made the transaction final."""
    world.wallet.broken = False
    entry = _archive(world, "wddl00004")
    world.ledger.add_notification(world.st.archive.get(entry))  # type: ignore[arg-type]
    world.ledger.add_dead_letter(entry, "wddl00004", "delivered 6 times without finishing", "max_deliveries", 6)
    publisher = MemoryPublisher()
    report = replay_dead_letters(DLQ, world.st, publisher)
    assert _results(report) == [("wddl00004", REQUEUED)] and publisher.published == [entry]
    assert "stays open until the transaction is final" in report.outcomes[0].message
    assert world.ledger.dead_letter_count() == 1
    process(entry, world.deps)
    assert _state(world, "wddl00004") == State.APPROVED and world.ledger.dead_letter_count() == 0


def test_a_letter_settled_by_a_reviewer_is_closed(world: World) -> None:
    """Once a reviewer settles the transaction, its letter is closed: --dlq does nothing with it and counts
    it among those closed before."""
    _dead_lettered(world, "wddl00005")
    reject(world.deps, "wddl00005", "os:tester", "patron called")
    report = replay_dead_letters(DLQ, world.st, MemoryPublisher())
    assert (report.outcomes, report.closed_before) == ([], 1)


def test_a_letter_without_its_notification_is_named_and_kept(world: World) -> None:
    """A letter whose notification is stored nowhere cannot be re-queued: said so, and kept."""
    world.ledger.add_dead_letter("1-0", "wddl00006", "unexpected KeyError", "unexpected_error", 1)
    report = replay_dead_letters(DLQ, world.st, MemoryPublisher())
    assert _results(report) == [("wddl00006", MISSING)] and world.ledger.dead_letter_count() == 1


def test_a_failed_queueing_leaves_the_letter_for_the_next_replay(world: World) -> None:
    """When the broker refuses, the dead letter is not marked re-queued and stays open."""
    entry = _dead_lettered(world, "wddl00003")
    publisher = MemoryPublisher()
    publisher.fail = True
    with pytest.raises(StoreError, match="publisher is set to fail"):
        replay_dead_letters(DLQ, world.st, publisher, force=True, actor="os:tester")
    [letter] = world.ledger.dead_letters()
    assert letter.entry_id == entry and letter.requeued_at is None


def test_a_changed_body_after_the_end_is_shown_once_and_closed(world: World) -> None:
    """A conflicting body for a transaction that had ended is a dead letter that stays open (counted,
    so alerts fire) until --dlq shows it to a person; nothing is queued; then it is closed."""
    from worker.replay_dlq import CONFLICT_SHOWN

    world.wallet.broken = False
    process(_archive(world, "wddl00009"), world.deps)
    assert _state(world, "wddl00009") == State.APPROVED
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())
    body.update(transactionId="wddl00009", amount="900.00", vipCardNumber=CARD, patronId=PATRON)
    conflict = world.st.archive.append("withdraw", json.dumps(body).encode(), status="conflict",
                                       transaction_id="wddl00009", error=None)
    process(conflict, world.deps)
    assert world.ledger.dead_letter_count() == 1 and _state(world, "wddl00009") == State.APPROVED
    publisher = MemoryPublisher()
    report = replay_dead_letters(DLQ, world.st, publisher)
    assert _results(report) == [("wddl00009", CONFLICT_SHOWN)] and publisher.published == []
    assert "vipflow tx show wddl00009" in report.outcomes[0].message
    assert world.ledger.dead_letter_count() == 0
    assert [d.reason for d in world.ledger.dead_letters(include_closed=True)] == ["conflict_after_end"]
