"""A withdrawal's hold through to its end, and a deposit's credit (issue 12): capture after VIP's
approval, release on rejection or error, reversal of a captured hold, expiry of what is left waiting.
The pipeline with the VIP and wallet fakes, the shipped rules, a real Redis and the ledger."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from tests.unit.test_pipeline_flow import PATRON, World, archive, deposit, withdraw
from worker import review_service
from worker.config import Settings, WalletSettings
from worker.errors import WalletRefusedError, WalletTransientError
from worker.expiry import expire_once
from worker.ledger import State
from worker.pipeline import process
from worker.vip.fake import vip_error_body
from worker.vip.protocol import ApprovalKind
from worker.wallet.fake import InMemoryWallet
from worker.wallet.protocol import Hold

MAX_AGE = WalletSettings().hold_max_age_s


class FlakyWallet(InMemoryWallet):
    """Fails the next ``n`` captures/credits as a wallet outage would (nothing moves)."""

    def __init__(self, balances: dict[str, Decimal]):
        super().__init__(balances)
        self.outages = {"capture": 0, "credit": 0}

    def capture(self, key: str) -> Hold:
        if self.outages["capture"]:
            self.outages["capture"] -= 1
            raise WalletTransientError("wallet capture: HTTP 503; retry later")
        return super().capture(key)

    def credit(self, key: str, patron_id: str, amount: Decimal) -> Any:
        if self.outages["credit"]:
            self.outages["credit"] -= 1
            raise WalletTransientError("wallet credit: HTTP 503; retry later")
        return super().credit(key, patron_id, amount)


class Died(BaseException):
    """The worker process dying mid-call (not an error the pipeline handles)."""


def _with_wallet(w: World, wallet: InMemoryWallet, **wallet_settings: Any) -> World:
    settings = Settings(wallet=WalletSettings(**wallet_settings)) if wallet_settings else w.deps.settings
    return replace(w, wallet=wallet, deps=replace(w.deps, wallet=wallet, settings=settings))


def test_approved_withdrawal_is_frozen_approved_and_captured_once(world: World) -> None:
    """Hold, approval, capture: one each, in that order; the balance goes down by the amount once."""
    rec = process(archive(world, "withdraw", withdraw("wdcap0001", "100.00")), world.deps)
    assert rec is not None and rec.state == State.APPROVED
    assert world.wallet.holds_created["wdcap0001"] == 1 and world.wallet.captures["wdcap0001"] == 1
    assert world.vip.approvals["wdcap0001"] == 1
    assert world.wallet.balance(PATRON) == Decimal("9900.00")
    done = [a.name for a in rec.actions if a.status == "done"]
    assert done.index("freeze") < done.index("approve") < done.index("capture")


def test_capture_outage_is_retried_by_the_next_delivery_without_a_second_approval(world: World) -> None:
    """The wallet down at capture time: the task fails (delivered again), the record says capturing,
    and the next delivery captures once without calling VIP again."""
    w = _with_wallet(world, FlakyWallet({PATRON: Decimal("10000.00")}))
    assert isinstance(w.wallet, FlakyWallet)
    w.wallet.outages["capture"] = 1
    entry = archive(w, "withdraw", withdraw("wdcap0002", "50.00"))
    with pytest.raises(WalletTransientError):
        process(entry, w.deps)
    stored = w.ledger.load("wdcap0002")
    assert stored is not None and stored.record.state == State.CAPTURING
    rec = process(entry, w.deps)
    assert rec is not None and rec.state == State.APPROVED
    assert w.vip.approvals["wdcap0002"] == 1 and w.wallet.captures["wdcap0002"] == 1


def test_worker_dying_after_the_capture_is_settled_by_the_next_delivery_once(world: World) -> None:
    """The capture's start is staged with its end, not committed alone: a worker that dies after the
    wallet captured leaves the approval started in the ledger; the next delivery reconciles it with VIP's
    lookup (no second approval call) and captures again, which the wallet answers with the same hold."""
    class DiesAfterCapture(InMemoryWallet):
        dying = True

        def capture(self, key: str) -> Hold:
            hold = super().capture(key)
            if self.dying:
                self.dying = False
                raise Died()
            return hold

    w = _with_wallet(world, DiesAfterCapture({PATRON: Decimal("10000.00")}))
    entry = archive(w, "withdraw", withdraw("wdcap0004", "40.00"))
    with pytest.raises(Died):
        process(entry, w.deps)
    stored = w.ledger.load("wdcap0004")
    assert stored is not None and stored.record.state == State.APPROVING
    assert w.wallet.captures["wdcap0004"] == 1
    rec = process(entry, w.deps)
    assert rec is not None and rec.state == State.APPROVED
    assert w.vip.approvals["wdcap0004"] == 1 and w.wallet.captures["wdcap0004"] == 1
    assert w.wallet.balance(PATRON) == Decimal("9960.00")
    steps = [(a.name, a.status) for a in rec.actions if a.name in ("approve", "capture")]
    assert steps == [("approve", "started"), ("approve", "started"), ("approve", "done"),
                     ("capture", "started"), ("capture", "done")]


def test_capture_refused_goes_to_review_saying_vip_approved(world: World) -> None:
    """A capture the wallet refuses (its hold was released behind vipflow's back) is not left silent:
    the transaction goes to review with the reason."""
    class ReleasedBehindOurBack(InMemoryWallet):
        def capture(self, key: str) -> Hold:
            raise WalletRefusedError("wrong_state", f"capture {key}: the hold was released")

    w = _with_wallet(world, ReleasedBehindOurBack({PATRON: Decimal("10000.00")}))
    rec = process(archive(w, "withdraw", withdraw("wdcap0003", "60.00")), w.deps)
    assert rec is not None and rec.state == State.REVIEW
    assert "VIP Connect approved it but the wallet refused the capture (wrong_state)" in (rec.review_reason or "")
    assert w.vip.approvals["wdcap0003"] == 1


def test_rejected_withdrawal_in_review_releases_its_hold(world: World) -> None:
    """Frozen and sent to review, then rejected by a reviewer: the hold is released, never captured."""
    process(archive(world, "withdraw", withdraw("wdrel0001", "3000.00")), world.deps)
    assert world.wallet.holds()["wdrel0001"].status == "held"
    rec = review_service.reject(world.deps, "wdrel0001", "os:tester", "patron asked to cancel")
    assert rec.state == State.REJECTED
    assert world.wallet.releases["wdrel0001"] == 1 and world.wallet.captures["wdrel0001"] == 0
    assert world.wallet.balance(PATRON) == Decimal("10000.00")


def test_reviewer_approval_captures_the_hold(world: World) -> None:
    """A reviewer's approval of a frozen withdrawal ends captured, like the worker's."""
    process(archive(world, "withdraw", withdraw("wdrev0001", "3000.00")), world.deps)
    rec = review_service.approve(world.deps, "wdrev0001", "os:tester")
    assert rec.state == State.APPROVED and world.wallet.captures["wdrev0001"] == 1
    assert world.wallet.balance(PATRON) == Decimal("7000.00")


def test_error_notification_after_capture_reverses_it(world: World) -> None:
    """VIP Connect fails a withdrawal it approved and vipflow captured: the capture is reversed once,
    the patron's balance is whole again, the transaction failed."""
    process(archive(world, "withdraw", withdraw("wdrev0002", "80.00")), world.deps)
    err = {"transactionId": "wdrev0002", **vip_error_body(13, "Closed account")}
    entry = archive(world, "error", err)
    rec = process(entry, world.deps)
    assert rec is not None and rec.state == State.FAILED
    assert world.wallet.reversals["wdrev0002"] == 1 and world.wallet.releases["wdrev0002"] == 0
    assert world.wallet.balance(PATRON) == Decimal("10000.00")
    assert process(entry, world.deps) is not None and world.wallet.reversals["wdrev0002"] == 1


def test_error_notification_while_held_releases_it(world: World) -> None:
    """An error for a withdrawal whose hold is still held (waiting in review) releases it."""
    process(archive(world, "withdraw", withdraw("wdrel0002", "3000.00")), world.deps)
    rec = process(archive(world, "error", {"transactionId": "wdrel0002", **vip_error_body()}), world.deps)
    assert rec is not None and rec.state == State.FAILED
    assert world.wallet.releases["wdrel0002"] == 1 and world.wallet.reversals["wdrel0002"] == 0


def test_hold_waiting_in_review_past_the_maximum_age_is_released_and_expired(world: World) -> None:
    """Nothing happens before the maximum age; after it (the clock moved, not slept) the hold is
    released, an expire step recorded with the age, and the transaction is expired."""
    process(archive(world, "withdraw", withdraw("wdexp0001", "3000.00")), world.deps)
    stored = world.ledger.load("wdexp0001")
    assert stored is not None
    created = stored.record.created_at or 0
    assert expire_once(world.deps, now=created + MAX_AGE - 1).expired == []
    done = expire_once(world.deps, now=created + MAX_AGE + 1)
    assert done.expired == ["wdexp0001"]
    stored = world.ledger.load("wdexp0001")
    assert stored is not None and stored.record.state == State.EXPIRED
    assert world.wallet.releases["wdexp0001"] == 1
    step = stored.record.last_action("expire")
    assert step is not None and step.result == {"age_s": MAX_AGE + 1, "max_age_s": MAX_AGE, "waited_in": "review"}
    assert world.ledger.in_state(State.REVIEW) == []
    assert expire_once(world.deps, now=created + 2 * MAX_AGE).expired == []  # final: left alone


def _die_during_approval(world: World, txid: str, *, after_commit: bool) -> None:
    """Process a withdrawal whose worker dies inside the approval call (before or after VIP took it)."""
    fake = world.vip
    real = fake.approve

    def dying(kind: ApprovalKind, body: Any) -> Any:
        if after_commit:
            real(kind, body)
        raise Died()

    fake.approve = dying  # type: ignore[method-assign]
    try:
        with pytest.raises(Died):
            process(archive(world, "withdraw", withdraw(txid, "70.00")), world.deps)
    finally:
        fake.approve = real  # type: ignore[method-assign]
    stored = world.ledger.load(txid)
    assert stored is not None and stored.record.state == State.APPROVING


def test_expiry_asks_vip_before_expiring_an_approval_in_flight(world: World) -> None:
    """An approval started whose answer was lost: VIP's lookup says it completed, so expiry records
    the approval and captures the hold instead of expiring it."""
    _die_during_approval(world, "wdexp0002", after_commit=True)
    stored = world.ledger.load("wdexp0002")
    assert stored is not None
    done = expire_once(world.deps, now=(stored.record.created_at or 0) + MAX_AGE + 1)
    assert done.approved == ["wdexp0002"] and done.expired == []
    stored = world.ledger.load("wdexp0002")
    assert stored is not None and stored.record.state == State.APPROVED
    assert world.wallet.captures["wdexp0002"] == 1 and world.vip.approvals["wdexp0002"] == 1


def test_expiry_expires_an_approval_vip_never_took(world: World) -> None:
    """An approval started that never reached VIP: the lookup finds nothing, the hold is released."""
    _die_during_approval(world, "wdexp0003", after_commit=False)
    stored = world.ledger.load("wdexp0003")
    assert stored is not None
    created = stored.record.created_at or 0
    world.vip.fail_next_lookups("timeout")
    first = expire_once(world.deps, now=created + MAX_AGE + 1)
    assert first.expired == [] and "lookup failed" in first.skipped["wdexp0003"]  # never expired blind
    assert expire_once(world.deps, now=created + MAX_AGE + 1).expired == ["wdexp0003"]
    assert world.wallet.releases["wdexp0003"] == 1 and world.vip.approvals["wdexp0003"] == 0


def test_confirmed_deposit_is_credited_once_across_redeliveries(world: World) -> None:
    """With wallet.credit_deposits on, an approved deposit is credited once by transaction id, even
    when the wallet was down at the first try and the notification came again."""
    w = _with_wallet(world, FlakyWallet({PATRON: Decimal("10000.00")}), credit_deposits=True)
    assert isinstance(w.wallet, FlakyWallet)
    w.wallet.outages["credit"] = 1
    entry = archive(w, "deposit", deposit("dpcred001", "89.76"))
    with pytest.raises(WalletTransientError):
        process(entry, w.deps)
    rec = process(entry, w.deps)
    again = process(archive(w, "deposit", deposit("dpcred001", "89.76")), w.deps)
    assert rec is not None and rec.state == State.APPROVED and again is not None
    assert w.wallet.credits_made["dpcred001"] == 1 and w.vip.approvals["dpcred001"] == 1
    assert w.wallet.balance(PATRON) == Decimal("10089.76")


def test_deposits_are_not_credited_by_default(world: World) -> None:
    """wallet.credit_deposits is off by default: the operator's cashier credits deposits."""
    rec = process(archive(world, "deposit", deposit("dpcred002")), world.deps)
    assert rec is not None and rec.state == State.APPROVED and world.wallet.credits() == {}


def test_velocity_counts_attempts_approved_and_pending_apart(world: World) -> None:
    """One withdrawal approved, one held in review then rejected by a person: the next one sees two
    attempts but only the approved amount as committed; the rejected one moved no money."""
    process(archive(world, "withdraw", withdraw("wdvel0001", "100.00")), world.deps)
    process(archive(world, "withdraw", withdraw("wdvel0002", "3000.00")), world.deps)
    held = process(archive(world, "withdraw", withdraw("wdvel0003", "20.00")), world.deps)
    assert held is not None and held.facts is not None
    assert held.facts["velocity"]["pending"]["amount_24h"] == "3000.00"  # held in review: pending
    review_service.reject(world.deps, "wdvel0002", "os:tester", "not the patron's account")
    rec = process(archive(world, "withdraw", withdraw("wdvel0004", "30.00")), world.deps)
    assert rec is not None and rec.facts is not None
    velocity = rec.facts["velocity"]
    assert velocity["attempts"]["count_24h"] == 3
    assert velocity["approved"] == {**velocity["approved"], "count_24h": 2, "amount_24h": "120.00"}
    assert velocity["pending"]["count_24h"] == 0
    assert velocity["committed"]["amount_24h"] == "120.00"


def test_a_changed_body_after_a_transaction_ended_is_a_dead_letter_once(world: World) -> None:
    """A different body for a withdrawal already approved and captured: its state stays (an ended
    transaction never goes back), the conflict is a step on its record and one dead letter, however
    often that notification is delivered; nothing is approved or moved again."""
    process(archive(world, "withdraw", withdraw("wdcnf0001", "100.00")), world.deps)
    conflict = archive(world, "withdraw", withdraw("wdcnf0001", "900.00"), status="conflict")
    for _ in range(2):
        rec = process(conflict, world.deps)
        assert rec is not None and rec.state == State.APPROVED
    [letter] = world.ledger.dead_letters()
    assert letter.reason == "conflict_after_end" and "after it was approved" in letter.error
    assert [a.name for a in rec.actions].count("conflict") == 1
    assert world.vip.approvals["wdcnf0001"] == 1 and world.wallet.captures["wdcnf0001"] == 1


def test_expiry_leaves_a_review_vip_already_approved(world: World) -> None:
    """VIP approved it but the wallet refused the capture: waiting in review past the maximum age it is
    not expired (that would release money VIP paid out); a person decides."""
    class RefusingCapture(InMemoryWallet):
        def capture(self, key: str) -> Hold:
            raise WalletRefusedError("wrong_state", f"capture {key}: refused")

    w = _with_wallet(world, RefusingCapture({PATRON: Decimal("10000.00")}))
    rec = process(archive(w, "withdraw", withdraw("wdcnf0002", "60.00")), w.deps)
    assert rec is not None and rec.state == State.REVIEW
    done = expire_once(w.deps, now=(rec.created_at or 0) + MAX_AGE + 1)
    assert done.expired == [] and "approved" in done.skipped["wdcnf0002"]
    assert w.wallet.releases["wdcnf0002"] == 0


def test_a_redis_that_forgot_its_scripts_still_gets_the_last_step(world: World) -> None:
    """After a Redis restart empties its script cache, the task's last round trip (buffer entry gone,
    lock released, velocity mark) loads the scripts again and runs: nothing is left pending."""
    process(archive(world, "withdraw", withdraw("wdscr0001", "40.00")), world.deps)
    world.client.script_flush()
    entry = archive(world, "withdraw", withdraw("wdscr0002", "45.00"))
    rec = process(entry, world.deps)
    assert rec is not None and rec.state == State.APPROVED
    assert entry not in {e.entry_id for e in world.archive.unprocessed()}
    assert rec.facts is not None and rec.facts["velocity"]["approved"]["count_24h"] == 1
    nxt = process(archive(world, "withdraw", withdraw("wdscr0003", "5.00")), world.deps)
    assert nxt is not None and nxt.facts is not None and nxt.facts["velocity"]["approved"]["count_24h"] == 2
