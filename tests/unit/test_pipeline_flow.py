"""The pipeline with the VIP and wallet fakes, the shipped rules and a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from rules import RuleBook, load_rulebook
from tests.conftest import FIXTURES, ROOT
from worker.config import Settings
from worker.errors import LedgerUnavailable
from worker.ledger import Ledger, State
from worker.pipeline import CONFLICT_REASON, Deps, process
from worker.reload import RuleHolder
from worker.review_service import queued
from worker.store.accounts import AccountCache
from worker.store.archive import Archive
from worker.store.locks import Locks
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip, vip_error_body
from worker.vip.models import AccountInquiry, ApprovalResult
from worker.vip.protocol import ApprovalKind
from worker.wallet.fake import InMemoryWallet

CARD = "7210695258"
PATRON = "P0001234"
PREFIX = "t"


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return load_rulebook(ROOT / "rules" / "default")


@dataclass
class World:
    deps: Deps
    vip: FakeVip
    wallet: InMemoryWallet
    archive: Archive
    client: redis.Redis
    ledger: Ledger


def _account(**changes: Any) -> AccountInquiry:
    body = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    return AccountInquiry.from_response({**body, **changes})


def _deps(client: redis.Redis, vip: Any, wallet: InMemoryWallet, book: RuleBook, ledger: Ledger) -> Deps:
    settings = Settings()
    return Deps(
        settings=settings, archive=Archive(client, PREFIX), ledger=ledger, locks=Locks(client, PREFIX, 30),
        accounts=AccountCache(client, PREFIX, 300),
        velocity=VelocityStore(client, PREFIX), vip=vip, wallet=wallet,
        rules=RuleHolder(ROOT / "rules" / "default", book=book), sleep=lambda s: None)


@pytest.fixture
def world(redis_url: str, book: RuleBook, ledger: Ledger) -> Iterator[World]:
    client = redis.Redis.from_url(redis_url)
    vip = FakeVip({CARD: _account()})
    wallet = InMemoryWallet({PATRON: Decimal("10000.00")})
    yield World(_deps(client, vip, wallet, book, ledger), vip, wallet, Archive(client, PREFIX), client, ledger)
    client.close()


def deposit(txid: str, amount: str = "89.76", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "deposit-approval-request.json").read_text())
    body.update(TransactionId=txid, Amount=amount, VipCardNumber=CARD, PatronId=PATRON, **changes)
    return body


def withdraw(txid: str, amount: str = "100.00", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())
    body.update(transactionId=txid, amount=amount, vipCardNumber=CARD, patronId=PATRON,
                maskedBankAccountNumber="**1111", bankRoutingNumber="22222222", **changes)
    return body


def archive(w: World, kind: str, body: Mapping[str, Any], status: str = "valid") -> str:
    raw = json.dumps(body).encode()
    txid = str(body.get("TransactionId") or body.get("transactionId"))
    return w.archive.append(kind, raw, status=status, transaction_id=txid, error=None)  # type: ignore[arg-type]


def pending(w: World) -> set[str]:
    return {e.entry_id for e in w.archive.unprocessed()}


def test_deposit_within_limits_is_approved_once(world: World) -> None:
    """A standard deposit is approved once, with the ruleset's version and hash on the record."""
    entry = archive(world, "deposit", deposit("dep000001"))
    rec = process(entry, world.deps)
    assert rec is not None and rec.state == "approved"
    assert world.vip.approvals["dep000001"] == 1
    assert rec.decision is not None and rec.decision["ruleset"] == "deposit"
    assert rec.decision["content_hash"] and rec.decision["version"] == 2
    assert rec.facts is not None and rec.facts["amount"] == "89.76"
    assert entry not in pending(world)


def test_withdrawal_is_frozen_before_it_is_approved(world: World) -> None:
    """An approved withdrawal holds the funds once, and the hold comes before the approval."""
    rec = process(archive(world, "withdraw", withdraw("wd0000001")), world.deps)
    assert rec is not None and rec.state == "approved"
    assert world.wallet.holds_created["wd0000001"] == 1
    assert world.vip.approvals["wd0000001"] == 1
    names = [a.name for a in rec.actions if a.status == "done"]
    assert names.index("freeze") < names.index("approve")


def test_large_withdrawal_is_frozen_and_sent_to_review(world: World) -> None:
    """A withdrawal above 2,500 is frozen and queued for review, never approved."""
    rec = process(archive(world, "withdraw", withdraw("wd0000002", "3000.00")), world.deps)
    assert rec is not None and rec.state == "review"
    assert world.wallet.holds_created["wd0000002"] == 1
    assert world.vip.calls["approve"] == 0
    assert [r.transaction_id for r, _ in world.ledger.in_state(State.REVIEW)] == ["wd0000002"]
    assert "large-withdrawal" in (rec.review_reason or "")


def test_patron_not_in_good_standing_is_rejected_without_approval_call(world: World) -> None:
    """VIP's 'not in good standing' rejects the deposit with no approval call."""
    world.vip.add_account(CARD, _account(isInGoodStanding=False))
    rec = process(archive(world, "deposit", deposit("dep000002")), world.deps)
    assert rec is not None and rec.state == "rejected"
    assert world.vip.calls["approve"] == 0


def test_redelivery_and_duplicates_act_once(world: World) -> None:
    """The same entry delivered three times gives one approval, one hold and three counted deliveries."""
    entry = archive(world, "withdraw", withdraw("wd0000003"))
    for _ in range(3):
        rec = process(entry, world.deps)
    assert rec is not None and rec.deliveries == 3 and rec.state == "approved"
    assert world.vip.calls["approve"] == 1
    assert world.wallet.holds_created["wd0000003"] == 1


class _CrashAfterApprove:
    """The fake VIP, but the worker 'dies' right after VIP committed the approval."""

    def __init__(self, inner: FakeVip):
        self.inner = inner

    def account_inquiry(self, card: str, product: str | None) -> AccountInquiry:
        return self.inner.account_inquiry(card, product)

    def approve(self, kind: ApprovalKind, body: Mapping[str, Any]) -> ApprovalResult:
        self.inner.approve(kind, body)
        raise SystemExit("killed")  # not an Exception: nothing in the pipeline may catch it

    def lookup_transaction(self, transaction_id: str) -> Any:
        return self.inner.lookup_transaction(transaction_id)


def test_crash_after_approve_started_is_reconciled_not_repeated(world: World, book: RuleBook) -> None:
    """After a crash mid-approval, the next delivery asks VIP's lookup and does not approve again."""
    entry = archive(world, "deposit", deposit("dep000003"))
    crashing = _deps(world.client, _CrashAfterApprove(world.vip), world.wallet, book, world.ledger)
    with pytest.raises(SystemExit):
        process(entry, crashing)
    assert entry in pending(world)
    rec = process(entry, world.deps)
    assert rec is not None and rec.state == "approved"
    assert world.vip.approvals["dep000003"] == 1
    assert world.vip.calls["lookup"] >= 1
    approve = rec.last_action("approve")
    assert approve is not None and approve.result is not None
    assert approve.result["status"] == "already_approved"


def test_conflicting_body_goes_to_review(world: World) -> None:
    """A second, different body for a transaction sends it to review and nothing is approved."""
    first = archive(world, "deposit", deposit("dep000004"))
    conflict = archive(world, "deposit", deposit("dep000004", amount="999.00"), status="conflict")
    rec = process(conflict, world.deps)
    assert rec is not None and rec.state == "review" and rec.review_reason == CONFLICT_REASON
    process(first, world.deps)
    assert world.vip.calls["approve"] == 0


def test_a_changed_body_for_a_transaction_in_review_is_put_before_the_reviewer(world: World) -> None:
    """A conflicting body for a transaction already in review makes the conflict its review reason."""
    world.vip.fail_next_approvals((400, vip_error_body(2, "FCRA decline")))
    rec = process(archive(world, "deposit", deposit("dep000014")), world.deps)
    assert rec is not None and rec.state == "review" and CONFLICT_REASON not in str(rec.review_reason)
    conflict = archive(world, "deposit", deposit("dep000014", amount="999.00"), status="conflict")
    rec = process(conflict, world.deps)
    assert rec is not None and rec.state == "review" and str(rec.review_reason).startswith(CONFLICT_REASON)
    assert [i.reason for i in queued(world.ledger, 3600)] == [rec.review_reason]


def test_error_notification_fails_the_transaction_and_releases_the_freeze(world: World) -> None:
    """VIP's error notification marks the transaction failed, releases its hold and unqueues it."""
    process(archive(world, "withdraw", withdraw("wd0000004", "3000.00")), world.deps)
    err = {"transactionId": "wd0000004", **vip_error_body(13, "Closed account")}
    rec = process(archive(world, "error", err), world.deps)
    assert rec is not None and rec.state == "failed"
    assert world.wallet.holds()["wd0000004"].status == "released"
    assert world.ledger.in_state(State.REVIEW) == []
    fail = rec.last_action("fail")
    assert fail is not None and fail.result == {"vip_error": {**vip_error_body(13, "Closed account")}}


def test_vip_refusal_goes_to_review_with_the_error_body(world: World) -> None:
    """A 4xx from VIP is not retried and the transaction goes to review with VIP's error body kept."""
    world.vip.fail_next_approvals((400, vip_error_body(2, "FCRA decline")))
    rec = process(archive(world, "deposit", deposit("dep000005")), world.deps)
    assert rec is not None and rec.state == "review"
    assert world.vip.calls["approve"] == 1
    approve = rec.last_action("approve")
    assert approve is not None and approve.result is not None
    assert approve.result["error"]["body"]["errorCode"] == 2


def test_transient_vip_errors_are_retried_to_one_approval(world: World) -> None:
    """Two 500s then success end in exactly one approval."""
    world.vip.fail_next_approvals(500, 500)
    rec = process(archive(world, "deposit", deposit("dep000006")), world.deps)
    assert rec is not None and rec.state == "approved"
    assert world.vip.approvals["dep000006"] == 1


def test_unexpected_error_goes_to_review_never_approved(world: World) -> None:
    """A rule book without a deposit ruleset cannot decide: the deposit goes to review."""
    world.deps = _deps(world.client, world.vip, world.wallet,
                       load_rulebook(Path(ROOT / "rules" / "default" / "withdraw.yaml")), world.ledger)
    rec = process(archive(world, "deposit", deposit("dep000007")), world.deps)
    assert rec is not None and rec.state == "review"
    assert world.vip.calls["approve"] == 0
    assert rec.errors and "RuleError" in rec.errors[-1]["message"]


class _CountingWallet(InMemoryWallet):
    def __init__(self, balances: Mapping[str, Decimal]):
        super().__init__(balances)
        self.balance_calls = 0

    def balance(self, patron_id: str) -> Decimal | None:
        self.balance_calls += 1
        return super().balance(patron_id)


def test_only_the_sources_the_rules_read_are_asked(world: World, book: RuleBook) -> None:
    """The shipped deposit rules read no wallet fact: no balance call, and the record says so;
    the withdrawal rules read wallet.balance: it is asked and nothing is listed as unasked."""
    wallet = _CountingWallet({PATRON: Decimal("10000.00")})
    deps = _deps(world.client, world.vip, wallet, book, world.ledger)
    dep = process(archive(world, "deposit", deposit("dep000008")), deps)
    assert dep is not None and dep.state == "approved" and wallet.balance_calls == 0
    assert dep.unasked == ("wallet",) and dep.facts is not None and dep.facts["wallet"]["balance"] is None
    wd = process(archive(world, "withdraw", withdraw("wd0000008")), deps)
    assert wd is not None and wd.state == "approved" and wallet.balance_calls == 1 and wd.unasked == ()


class _FinishFails(Ledger):
    """A ledger whose last write of a task fails once, as if the database went away at that moment."""

    failed = False

    def write(self, prev: Any, new: Any, **kw: Any) -> Any:
        if kw.get("done_entry") and not self.failed:
            self.failed = True
            raise LedgerUnavailable("the database went away")
        return super().write(prev, new, **kw)


def test_a_lost_final_write_is_reconciled_on_redelivery(world: World, book: RuleBook) -> None:
    """The approval's "done" step is staged for the task's last write; if that write is lost, the
    lock is released, the entry stays pending, and the redelivery asks VIP's lookup instead of
    approving again."""
    from prometheus_client import REGISTRY

    def counted(status: str) -> float:
        return REGISTRY.get_sample_value("vipflow_actions_total", {"action": "approve", "result": status}) or 0.0

    before = {s: counted(s) for s in ("approved", "already_approved")}
    entry = archive(world, "deposit", deposit("dep000009"))
    deps = _deps(world.client, world.vip, world.wallet, book, world.ledger)
    failing = replace(deps, ledger=_FinishFails(world.ledger.engine))
    with pytest.raises(LedgerUnavailable):
        process(entry, failing)
    assert entry in pending(world) and world.vip.approvals["dep000009"] == 1
    rec = process(entry, failing)
    assert rec is not None and rec.state == "approved" and rec.deliveries == 2
    assert world.vip.approvals["dep000009"] == 1 and world.vip.calls["lookup"] == 1
    approve = rec.last_action("approve")
    assert approve is not None and approve.result is not None and approve.result["status"] == "already_approved"
    assert entry not in pending(world)
    # Counted once, when stored: the lost "approved" step was never counted.
    assert {s: counted(s) - before[s] for s in before} == {"approved": 0, "already_approved": 1}


def test_an_approved_withdrawal_leaves_its_whole_story_in_the_ledger(world: World) -> None:
    """The ledger holds the notification as received and, in order, received, delivered, decided,
    the freeze's and the approval's steps, each by the worker; the current row is approved."""
    entry = archive(world, "withdraw", withdraw("wd0000010"))
    process(entry, world.deps)
    events = world.ledger.events("wd0000010")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    steps = [(e.kind, e.name, e.status) for e in events]
    assert steps[:3] == [("received", None, None), ("delivered", None, None), ("decided", "approve", None)]
    assert steps[3:] == [("action", "freeze", "started"), ("action", "freeze", "done"),
                         ("action", "approve", "started"), ("action", "approve", "done"),
                         ("action", "capture", "started"), ("action", "capture", "done")]
    assert {e.actor for e in events} == {"worker"}
    decided = events[2].data or {}
    assert decided["decision"]["content_hash"] and decided["facts"]["amount"] == "100.00"
    stored = world.ledger.load("wd0000010")
    assert stored is not None and stored.record.state == "approved" and stored.seq == len(events)
    note = world.ledger.notification(entry)
    assert note is not None and note.body == json.dumps(withdraw("wd0000010")).encode()
    rules = world.ledger.ruleset(decided["decision"]["content_hash"])
    assert rules is not None and "ruleset: withdraw" in rules["text"]


class _LooksInTheLedger:
    """The fake VIP, noting what the ledger says about the approval at the moment VIP is called."""

    def __init__(self, inner: FakeVip, ledger: Ledger):
        self.inner, self.ledger = inner, ledger
        self.seen: list[tuple[str, str, str | None]] = []

    def account_inquiry(self, card: str, product: str | None) -> AccountInquiry:
        return self.inner.account_inquiry(card, product)

    def approve(self, kind: ApprovalKind, body: Mapping[str, Any]) -> ApprovalResult:
        txid = str(body.get("TransactionId") or body.get("transactionId"))
        self.seen = [(e.kind, str(e.name), e.status) for e in self.ledger.events(txid)]
        return self.inner.approve(kind, body)

    def transaction(self, kind: ApprovalKind, transaction_id: str) -> Any:
        return self.inner.transaction(kind, transaction_id)


def test_the_approval_start_is_durable_before_vip_is_called(world: World, book: RuleBook) -> None:
    """When VIP Connect receives the approval, the ledger already holds the decision and the approval's
    "started" step, committed."""
    vip = _LooksInTheLedger(world.vip, world.ledger)
    deps = _deps(world.client, vip, world.wallet, book, world.ledger)
    process(archive(world, "deposit", deposit("dep000010")), deps)
    assert ("decided", "approve", None) in vip.seen
    assert vip.seen[-1] == ("action", "approve", "started")


def test_each_event_carries_the_state_it_left_the_transaction_in(world: World) -> None:
    """Steps folded into one write still show the state after each of them, not the write's last."""
    process(archive(world, "withdraw", withdraw("wd0000011")), world.deps)
    states = [(e.kind, e.name, e.status, e.state) for e in world.ledger.events("wd0000011")]
    assert states == [
        ("received", None, None, "received"), ("delivered", None, None, "received"),
        ("decided", "approve", None, "decided"), ("action", "freeze", "started", "decided"),
        ("action", "freeze", "done", "frozen"), ("action", "approve", "started", "approving"),
        ("action", "approve", "done", "capturing"), ("action", "capture", "started", "capturing"),
        ("action", "capture", "done", "approved")]


def test_event_times_follow_their_order(world: World) -> None:
    """Events are stamped when they happened (receipt, delivery, decision, each step), so their times
    never go backwards along the log."""
    process(archive(world, "withdraw", withdraw("wd0000012")), world.deps)
    times = [e.at for e in world.ledger.events("wd0000012")]
    assert times == sorted(times)
