"""Review approve/reject on the ledger (SQLite and PostgreSQL), with the VIP and wallet fakes, the shipped rules
and a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import redis
from sqlalchemy import update

from rules import load_rulebook
from tests.conftest import FIXTURES, ROOT
from worker.config import Settings
from worker.ledger import Ledger, RecordWriter, State, TransactionRecord, tables
from worker.ledger.actor import cli_actor
from worker.ledger.events import Event
from worker.pipeline import Deps, process
from worker.reload import RuleHolder
from worker.review_service import (
    INTERRUPTED,
    NotInReview,
    ReviewActionFailed,
    ReviewInputError,
    approve,
    queued,
    queued_record,
    reject,
)
from worker.store.accounts import AccountCache
from worker.store.archive import Archive
from worker.store.locks import Locks
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry
from worker.wallet.fake import InMemoryWallet

CARD = "7210695258"
PATRON = "P0001234"
PREFIX = "rv"
ACTOR = cli_actor(Settings())  # "os:<user>": who the CLI records


@dataclass
class World:
    deps: Deps
    vip: FakeVip
    wallet: InMemoryWallet
    ledger: Ledger


@pytest.fixture
def world(redis_url: str, ledger_url: str) -> Iterator[World]:
    client = redis.Redis.from_url(redis_url)
    ledger = Ledger.open(ledger_url)
    body = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    vip = FakeVip({CARD: AccountInquiry.from_response(body)})
    wallet = InMemoryWallet({PATRON: Decimal("10000.00")})
    path = ROOT / "rules" / "default"
    deps = Deps(settings=Settings(), archive=Archive(client, PREFIX), ledger=ledger, locks=Locks(client, PREFIX, 30),
                accounts=AccountCache(client, PREFIX, 300), velocity=VelocityStore(client, PREFIX), vip=vip,
                wallet=wallet, rules=RuleHolder(path, book=load_rulebook(path)), sleep=lambda s: None)
    yield World(deps, vip, wallet, ledger)
    ledger.engine.dispose()
    client.close()


def _withdrawal_in_review(w: World, txid: str, amount: str = "3000.00") -> None:
    """A withdrawal above 2,500: the shipped rules freeze it and send it to review."""
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())
    body.update(transactionId=txid, amount=amount, vipCardNumber=CARD, patronId=PATRON,
                maskedBankAccountNumber="**1111", bankRoutingNumber="22222222")
    entry = w.deps.archive.append("withdraw", json.dumps(body).encode(), status="valid",
                                  transaction_id=txid, error=None)
    rec = process(entry, w.deps)
    assert rec is not None and rec.state == State.REVIEW


def _state(w: World, txid: str) -> TransactionRecord:
    stored = w.ledger.load(txid)
    assert stored is not None
    return stored.record


def _human(w: World, txid: str) -> list[Event]:
    return [e for e in w.ledger.events(txid) if e.kind == "human"]


def test_approve_twice_approves_once(world: World) -> None:
    """A double click: the second approve finds it approved (NotInReview) and VIP saw one approval."""
    _withdrawal_in_review(world, "wdrv00001")
    rec = approve(world.deps, "wdrv00001", ACTOR, "called the patron")
    assert rec.state == State.APPROVED
    with pytest.raises(NotInReview, match="wdrv00001 is not waiting for review \\(it is approved\\)"):
        approve(world.deps, "wdrv00001", ACTOR)
    assert world.vip.approvals["wdrv00001"] == 1
    assert [i.transaction_id for i in queued(world.ledger, 3600)] == []


def test_approval_is_a_human_event_with_the_authenticated_actor(world: World) -> None:
    """The ledger holds the reviewer's approval as human events by ``os:<user>``, the stated name and
    reason beside it, and the state passing review -> frozen/approving -> approved."""
    _withdrawal_in_review(world, "wdrv00002")
    rec = approve(world.deps, "wdrv00002", ACTOR, "called the patron", stated_name=" alice ")
    done = rec.last_action("review_approve")
    assert done is not None and done.status == "done" and done.at > 0
    assert done.result == {"actor": ACTOR, "stated_name": "alice", "reason": "called the patron",
                           "verdict": "approve"}
    human = _human(world, "wdrv00002")
    assert [(e.name, e.status, e.actor) for e in human] == [("review_approve", "started", ACTOR),
                                                             ("review_approve", "done", ACTOR)]
    assert ACTOR.startswith(("os:", "config:"))
    events = world.ledger.events("wdrv00002")
    after_start = [e.state for e in events if e.seq > human[0].seq]
    assert "approving" in after_start and after_start[-1] == "approved"
    assert human[0].state == "review"


def test_vip_refusal_keeps_it_in_review_with_the_error(world: World) -> None:
    """VIP refusing the approval leaves it in review, the error on the record and in a failed human event."""
    _withdrawal_in_review(world, "wdrv00003")
    world.vip.fail_next_approvals(400)
    with pytest.raises(ReviewActionFailed, match="stays in review"):
        approve(world.deps, "wdrv00003", ACTOR)
    rec = _state(world, "wdrv00003")
    assert rec.state == State.REVIEW
    assert [i.transaction_id for i in queued(world.ledger, 3600)] == ["wdrv00003"]
    failed = rec.last_action("review_approve")
    assert failed is not None and failed.status == "failed" and "refused" in str(failed.result)
    assert [(e.status, e.actor) for e in _human(world, "wdrv00003")] == [("started", ACTOR), ("failed", ACTOR)]
    assert world.wallet.holds()["wdrv00003"].status == "held"


def test_approve_after_a_failed_approval_reconciles_then_approves_once(world: World) -> None:
    """After VIP timed out (and in fact committed), a reviewer's approve finds it approved: no second call."""
    _withdrawal_in_review(world, "wdrv00004")
    world.vip.fail_next_approvals("commit_then_timeout")
    # VIP committed but answered with a timeout, then its lookup was down for all 5 attempts' checks.
    world.vip.fail_next_lookups(*(["down"] * 5))
    with pytest.raises(ReviewActionFailed):
        approve(world.deps, "wdrv00004", ACTOR)
    assert world.vip.approvals["wdrv00004"] == 1 and world.vip.calls["lookup"] == 5
    rec = approve(world.deps, "wdrv00004", ACTOR)
    assert rec.state == State.APPROVED and world.vip.approvals["wdrv00004"] == 1
    last = rec.last_action("approve")
    assert last is not None and last.result is not None and last.result["status"] == "already_approved"


def test_reject_releases_the_freeze_and_leaves_the_queue(world: World) -> None:
    """Rejecting a frozen withdrawal releases its hold, records the reason and the actor, and unqueues it."""
    _withdrawal_in_review(world, "wdrv00005")
    assert world.wallet.holds()["wdrv00005"].status == "held"
    rec = reject(world.deps, "wdrv00005", ACTOR, "patron asked to cancel", stated_name="bob")
    assert rec.state == State.REJECTED
    assert world.wallet.holds()["wdrv00005"].status == "released"
    assert queued(world.ledger, 3600) == []
    assert world.vip.approvals["wdrv00005"] == 0
    done = rec.last_action("review_reject")
    assert done is not None and done.result is not None and done.result["reason"] == "patron asked to cancel"
    events = world.ledger.events("wdrv00005")
    assert [e.name for e in events if e.name == "release" and e.status == "done"] == ["release"]
    assert [(e.name, e.status, e.actor) for e in _human(world, "wdrv00005")][-1] == ("review_reject", "done", ACTOR)
    assert events[-1].state == "rejected"


def test_reject_needs_a_reason(world: World) -> None:
    """A rejection without a reason is refused before anything changes."""
    _withdrawal_in_review(world, "wdrv00006")
    with pytest.raises(ReviewInputError, match="--reason"):
        reject(world.deps, "wdrv00006", ACTOR, "  ")
    assert queued_record(world.ledger, "wdrv00006").state == State.REVIEW


def test_a_human_action_needs_an_actor(world: World) -> None:
    """An empty actor is refused: a stated name alone is never who is recorded."""
    _withdrawal_in_review(world, "wdrv00010")
    with pytest.raises(ReviewInputError, match="actor"):
        approve(world.deps, "wdrv00010", " ", stated_name="alice")
    assert _human(world, "wdrv00010") == [] and world.vip.approvals["wdrv00010"] == 0


def test_unknown_transaction_is_not_in_review(world: World) -> None:
    """Approving a transaction vipflow never saw says it is not waiting for review."""
    with pytest.raises(NotInReview, match="no record"):
        approve(world.deps, "nosuch0001", ACTOR)


def _interrupt_mid_approval(w: World, txid: str) -> None:
    """What the ledger holds when a reviewer's process dies during the call to VIP Connect."""
    stored = w.ledger.load(txid)
    assert stored is not None
    lock = w.deps.locks.lock(txid)
    lock.acquire()
    save = RecordWriter(w.ledger, lock, stored)
    rec = save(stored.record.with_action("review_approve", "started", {"actor": ACTOR, "verdict": "approve"}))
    save(rec.with_action("approve", "started", {"outcome_unknown": False}).moved(State.APPROVING))
    lock.release()


def test_an_interrupted_approval_cannot_be_rejected(world: World) -> None:
    """A reviewer's approval that died mid-call (VIP may have paid) cannot be rejected; the hold stays."""
    _withdrawal_in_review(world, "wdrv00007")
    _interrupt_mid_approval(world, "wdrv00007")
    with pytest.raises(ReviewActionFailed, match="approve it to reconcile"):
        reject(world.deps, "wdrv00007", ACTOR, "changed my mind")
    assert world.wallet.holds()["wdrv00007"].status == "held"


def test_an_interrupted_approval_is_listed_and_approved_once(world: World) -> None:
    """A dead reviewer's approval is listed again; approving it asks VIP first and approves once."""
    _withdrawal_in_review(world, "wdrv00011")
    world.vip.approve("withdraw", {"transactionId": "wdrv00011", "amount": "3000.00"})  # the call did land
    _interrupt_mid_approval(world, "wdrv00011")
    items = queued(world.ledger, 3600)
    assert [(i.transaction_id, i.state, i.reason) for i in items] == [("wdrv00011", "approving", INTERRUPTED)]
    rec = approve(world.deps, "wdrv00011", ACTOR)
    assert rec.state == State.APPROVED and world.vip.approvals["wdrv00011"] == 1


def test_an_unexpected_failure_puts_it_back_in_review(world: World) -> None:
    """An error nobody expected during the VIP call leaves it in review (not stuck in approving), and the
    next approve reconciles with VIP's lookup before calling again."""
    _withdrawal_in_review(world, "wdrv00012")
    real = world.vip.approve

    def broken(kind: Any, body: Any) -> Any:
        raise KeyError("surprise")

    world.vip.approve = broken  # type: ignore[method-assign]
    with pytest.raises(KeyError):
        approve(world.deps, "wdrv00012", ACTOR)
    rec = _state(world, "wdrv00012")
    assert rec.state == State.REVIEW and rec.last_action("review_approve").status == "failed"  # type: ignore[union-attr]
    world.vip.approve = real  # type: ignore[method-assign]
    rec = approve(world.deps, "wdrv00012", ACTOR)
    assert rec.state == State.APPROVED and world.vip.approvals["wdrv00012"] == 1
    assert world.vip.calls["lookup"] >= 1


def test_list_is_oldest_first_and_flags_overdue(world: World) -> None:
    """The queue lists oldest first (by when each entered review) with type, amount and matched rules."""
    _withdrawal_in_review(world, "wdrv00008")
    _withdrawal_in_review(world, "wdrv00009", "4000.00")
    with world.ledger.engine.begin() as conn:  # wdrv00008 has waited since 1970
        conn.execute(update(tables.transactions).where(tables.transactions.c.transaction_id == "wdrv00008")
                     .values(review_since=1.0))
    items = queued(world.ledger, 3600)
    assert [i.transaction_id for i in items] == ["wdrv00008", "wdrv00009"]
    assert [i.overdue for i in items] == [True, False]
    assert items[0].enqueued_at == 1.0
    assert items[1].transaction_type == "withdraw" and items[1].amount == "4000.00"
    assert "large-withdrawal" in items[1].matched
