"""Review approve/reject with the VIP and wallet fakes, the shipped rules and a real Redis."""

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
from worker.config import Settings
from worker.pipeline import Deps, process
from worker.reload import RuleHolder
from worker.review_service import NotInReview, ReviewActionFailed, ReviewInputError, approve, queued, reject
from worker.store.accounts import AccountCache
from worker.store.archive import Archive
from worker.store.records import RecordStore
from worker.store.review import ReviewQueue
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry
from worker.wallet.fake import InMemoryWallet

CARD = "7210695258"
PATRON = "P0001234"
PREFIX = "rv"


@dataclass
class World:
    deps: Deps
    vip: FakeVip
    wallet: InMemoryWallet


@pytest.fixture
def world(redis_url: str) -> Iterator[World]:
    client = redis.Redis.from_url(redis_url)
    body = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    vip = FakeVip({CARD: AccountInquiry.from_response(body)})
    wallet = InMemoryWallet({PATRON: Decimal("10000.00")})
    path = ROOT / "rules" / "default"
    deps = Deps(settings=Settings(), archive=Archive(client, PREFIX), records=RecordStore(client, PREFIX, 30),
                reviews=ReviewQueue(client, PREFIX), accounts=AccountCache(client, PREFIX, 300),
                velocity=VelocityStore(client, PREFIX), vip=vip, wallet=wallet,
                rules=RuleHolder(path, book=load_rulebook(path)), sleep=lambda s: None)
    yield World(deps, vip, wallet)
    client.close()


def _withdrawal_in_review(w: World, txid: str, amount: str = "3000.00") -> None:
    """A withdrawal above 2,500: the shipped rules freeze it and send it to review."""
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())
    body.update(transactionId=txid, amount=amount, vipCardNumber=CARD, patronId=PATRON,
                maskedBankAccountNumber="**1111", bankRoutingNumber="22222222")
    entry = w.deps.archive.append("withdraw", json.dumps(body).encode(), status="valid",
                                  transaction_id=txid, error=None)
    rec = process(entry, w.deps)
    assert rec is not None and rec.state == "review"


def test_approve_twice_approves_once(world: World) -> None:
    """A double click: the second approve finds the item gone (NotInReview) and VIP saw one approval."""
    _withdrawal_in_review(world, "wdrv00001")
    rec = approve(world.deps, "wdrv00001", "alice", "called the patron")
    assert rec.state == "approved"
    with pytest.raises(NotInReview, match="wdrv00001 is not waiting for review \\(it is approved\\)"):
        approve(world.deps, "wdrv00001", "alice")
    assert world.vip.approvals["wdrv00001"] == 1
    assert world.deps.reviews.get("wdrv00001") is None


def test_approval_keeps_who_when_and_why(world: World) -> None:
    """The record holds the reviewer, the reason and the time of the approval."""
    _withdrawal_in_review(world, "wdrv00002")
    rec = approve(world.deps, "wdrv00002", " alice ", "called the patron")
    done = rec.last_action("review_approve")
    assert done is not None and done.status == "done" and done.at > 0
    assert done.result == {"reviewer": "alice", "reason": "called the patron", "verdict": "approve"}


def test_vip_refusal_keeps_it_in_review_with_the_error(world: World) -> None:
    """VIP refusing the approval leaves the item queued, the error on the record, and raises."""
    _withdrawal_in_review(world, "wdrv00003")
    world.vip.fail_next_approvals(400)
    with pytest.raises(ReviewActionFailed, match="stays in review"):
        approve(world.deps, "wdrv00003", "alice")
    rec = world.deps.records.load("wdrv00003")
    assert rec is not None and rec.state == "review"
    assert world.deps.reviews.get("wdrv00003") is not None
    failed = rec.last_action("review_approve")
    assert failed is not None and failed.status == "failed" and "refused" in str(failed.result)


def test_approve_after_a_failed_approval_reconciles_then_approves_once(world: World) -> None:
    """After VIP timed out (and in fact committed), a reviewer's approve finds it approved: no second call."""
    _withdrawal_in_review(world, "wdrv00004")
    world.vip.fail_next_approvals("commit_then_timeout")
    # VIP committed but answered with a timeout, then its lookup was down for all 5 attempts' checks.
    world.vip.fail_next_lookups(*(["down"] * 5))
    with pytest.raises(ReviewActionFailed):
        approve(world.deps, "wdrv00004", "alice")
    assert world.vip.approvals["wdrv00004"] == 1 and world.vip.calls["lookup"] == 5
    rec = approve(world.deps, "wdrv00004", "alice")
    assert rec.state == "approved" and world.vip.approvals["wdrv00004"] == 1
    last = rec.last_action("approve")
    assert last is not None and last.result is not None and last.result["status"] == "already_approved"


def test_reject_releases_the_freeze_and_leaves_the_queue(world: World) -> None:
    """Rejecting a frozen withdrawal releases its hold, records the reason and unqueues it."""
    _withdrawal_in_review(world, "wdrv00005")
    assert world.wallet.holds()["wdrv00005"].status == "held"
    rec = reject(world.deps, "wdrv00005", "bob", "patron asked to cancel")
    assert rec.state == "rejected"
    assert world.wallet.holds()["wdrv00005"].status == "released"
    assert world.deps.reviews.get("wdrv00005") is None
    assert world.vip.approvals["wdrv00005"] == 0
    done = rec.last_action("review_reject")
    assert done is not None and done.result is not None and done.result["reason"] == "patron asked to cancel"


def test_reject_needs_a_reason(world: World) -> None:
    """A rejection without a reason is refused before anything changes."""
    _withdrawal_in_review(world, "wdrv00006")
    with pytest.raises(ReviewInputError, match="--reason"):
        reject(world.deps, "wdrv00006", "bob", "  ")
    assert world.deps.reviews.get("wdrv00006") is not None


def test_unknown_transaction_is_not_in_review(world: World) -> None:
    """Approving a transaction vipflow never saw says it is not waiting for review."""
    with pytest.raises(NotInReview, match="no record"):
        approve(world.deps, "nosuch0001", "alice")


def test_reject_after_an_approval_started_is_refused(world: World) -> None:
    """A started approval with an unknown outcome cannot be rejected (VIP may have paid)."""
    _withdrawal_in_review(world, "wdrv00007")
    world.vip.fail_next_approvals(*(["timeout"] * 10))
    world.vip.fail_next_lookups(*(["down"] * 20))
    with pytest.raises(ReviewActionFailed):
        approve(world.deps, "wdrv00007", "alice")
    rec = world.deps.records.load("wdrv00007")
    assert rec is not None
    lock = world.deps.records.lock("wdrv00007")
    lock.acquire()
    world.deps.records.save(rec.with_action("approve", "started"), lock)  # a crash mid-approval
    lock.release()
    with pytest.raises(ReviewActionFailed, match="approve it to reconcile"):
        reject(world.deps, "wdrv00007", "bob", "changed my mind")
    assert world.wallet.holds()["wdrv00007"].status == "held"


def test_list_is_oldest_first_and_flags_overdue(world: World) -> None:
    """The queue lists oldest first with type, amount and matched rules; old items are overdue."""
    _withdrawal_in_review(world, "wdrv00008")
    _withdrawal_in_review(world, "wdrv00009", "4000.00")
    world.deps.reviews.remove("wdrv00008")
    world.deps.reviews.enqueue("wdrv00008", at=1.0)
    items = queued(world.deps.records, world.deps.reviews, 3600)
    assert [i.transaction_id for i in items] == ["wdrv00008", "wdrv00009"]
    assert [i.overdue for i in items] == [True, False]
    assert items[1].transaction_type == "withdraw" and items[1].amount == "4000.00"
    assert "large-withdrawal" in items[1].matched
