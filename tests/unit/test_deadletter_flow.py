"""Dead letters from the pipeline: an unexpected error, a delivery past the limit, a task giving up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
import redis

from rules import load_rulebook
from tests.conftest import FIXTURES, ROOT
from worker.config import Settings, WorkerSettings
from worker.deliveries import RETRIES_EXHAUSTED, give_up
from worker.errors import WalletTransientError
from worker.ledger import Ledger, State
from worker.pipeline import Deps, process
from worker.reload import RuleHolder
from worker.store import keys
from worker.store.accounts import AccountCache
from worker.store.archive import Archive
from worker.store.locks import Locks
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry
from worker.wallet.fake import InMemoryWallet

CARD = "7210695258"
PATRON = "P0001234"
PREFIX = "dl"


class ExplodingVip(FakeVip):
    """A VIP client whose account inquiry raises something nobody expects."""

    def account_inquiry(self, vip_card_number: str, product_type: str | None) -> AccountInquiry:
        raise KeyError("boom")


@pytest.fixture
def deps(redis_url: str, ledger: Ledger) -> Iterator[Deps]:
    client = redis.Redis.from_url(redis_url)
    body = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    settings = Settings(worker=WorkerSettings(max_deliveries=2))
    yield Deps(settings=settings, archive=Archive(client, PREFIX), ledger=ledger,
               locks=Locks(client, PREFIX, 30), accounts=AccountCache(client, PREFIX, 0),
               velocity=VelocityStore(client, PREFIX), vip=FakeVip({CARD: AccountInquiry.from_response(body)}),
               wallet=InMemoryWallet({PATRON: Decimal("10000.00")}),
               rules=RuleHolder(ROOT / "rules" / "default", book=load_rulebook(ROOT / "rules" / "default")),
               sleep=lambda s: None)
    client.close()


def _archive(deps: Deps, txid: str) -> str:
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "deposit-approval-request.json").read_text())
    body.update(TransactionId=txid, Amount="89.76", VipCardNumber=CARD, PatronId=PATRON)
    return deps.archive.append("deposit", json.dumps(body).encode(), status="valid", transaction_id=txid,
                               error=None)


def test_unexpected_error_is_dead_lettered_and_reviewed(deps: Deps) -> None:
    """An exception the pipeline does not expect: one dead letter with the attempt count, and review."""
    entry = _archive(deps, "dlunexp01")
    rec = process(entry, replace(deps, vip=ExplodingVip({})))
    assert rec is not None and rec.state == "review"
    letters = deps.ledger.dead_letters()
    assert [(d.entry_id, d.transaction_id, d.attempts) for d in letters] == [(entry, "dlunexp01", 1)]
    assert "KeyError" in letters[0].error and _in_review(deps) == ["dlunexp01"]
    assert "dead_letter" in [e.kind for e in deps.ledger.events("dlunexp01")]


def test_delivery_past_the_limit_does_nothing_but_dead_letter_and_review(deps: Deps) -> None:
    """With max_deliveries 2, a third delivery of an undecided transaction dead-letters it, unapproved."""
    entry = _archive(deps, "dllimit01")
    # Two deliveries died mid-work, before either reached the ledger: only their count (in Redis) is left.
    deps.locks.redis.hset(keys.deliveries(PREFIX, "dllimit01"), "n", 2)
    rec = process(entry, deps)
    assert rec is not None and rec.state == "review" and rec.deliveries == 3 and rec.decision is None
    assert deps.vip.calls["approve"] == 0  # type: ignore[attr-defined]
    letters = deps.ledger.dead_letters()
    assert [(d.entry_id, d.attempts) for d in letters] == [(entry, 3)]
    assert entry not in {e.entry_id for e in deps.archive.unprocessed()}


def test_give_up_dead_letters_and_reviews_an_undecided_transaction(deps: Deps) -> None:
    """The task's give-up path: dead letter with the attempts, the transaction in review, entry settled."""
    entry = _archive(deps, "dlgiveup1")
    give_up(entry, archive=deps.archive, ledger=deps.ledger, locks=deps.locks,
            error="LockBusy after 6 attempts", attempts=6, reason=RETRIES_EXHAUSTED, lock_wait_s=1)
    stored = deps.ledger.load("dlgiveup1")
    assert stored is not None and stored.record.state == "review"
    assert stored.record.review_reason == "LockBusy after 6 attempts"
    assert [(d.entry_id, d.attempts) for d in deps.ledger.dead_letters()] == [(entry, 6)]
    assert entry not in {e.entry_id for e in deps.ledger.unprocessed()}


def test_give_up_leaves_a_finished_transaction_as_it_is(deps: Deps) -> None:
    """A transaction already approved is dead-lettered for the record but not sent to review."""
    entry = _archive(deps, "dlgiveup2")
    process(entry, deps)
    give_up(entry, archive=deps.archive, ledger=deps.ledger, locks=deps.locks,
            error="RedisError after 6 attempts", attempts=6, reason=RETRIES_EXHAUSTED, lock_wait_s=1)
    stored = deps.ledger.load("dlgiveup2")
    assert stored is not None and stored.record.state == "approved" and _in_review(deps) == []


class DownWallet(InMemoryWallet):
    """An in-memory wallet whose holds fail as an outage does (WalletTransientError) while ``down``."""

    down = True

    def hold(self, key: str, patron_id: str, amount: Decimal) -> Any:
        if self.down:
            raise WalletTransientError("the wallet did not answer (simulated outage)")
        return super().hold(key, patron_id, amount)


def test_a_wallet_outage_outlasting_the_delivery_limit_is_retried_not_dead_lettered(deps: Deps) -> None:
    """With max_deliveries 2, five deliveries that end in the task's own retry (the wallet down) do not
    count against the limit: once the wallet is back the withdrawal is frozen once, approved and captured."""
    wallet = DownWallet({PATRON: Decimal("10000.00")})
    deps = replace(deps, wallet=wallet)
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())
    body.update(transactionId="dloutage1", amount="100.00", vipCardNumber=CARD, patronId=PATRON)
    entry = deps.archive.append("withdraw", json.dumps(body).encode(), status="valid", transaction_id="dloutage1",
                                error=None)
    for _ in range(5):
        with pytest.raises(WalletTransientError):
            process(entry, deps)
    wallet.down = False
    rec = process(entry, deps)
    assert rec is not None and rec.state == "approved" and deps.ledger.dead_letters() == []
    assert wallet.holds()["dloutage1"].status == "captured" and wallet.holds_created["dloutage1"] == 1
    assert rec.deliveries == 6


def test_deliveries_that_died_still_count_beside_those_that_retried(deps: Deps) -> None:
    """Three earlier deliveries, one of which ended in the task's own retry: with this fourth, three did not
    end in a retry, past max_deliveries 2, so it is dead-lettered (deaths still count)."""
    entry = _archive(deps, "dlmixed01")
    deps.locks.redis.hset(keys.deliveries(PREFIX, "dlmixed01"), mapping={"n": 3, "r": 1, "known": 1})
    rec = process(entry, deps)  # the fourth delivery: 4 - 1 = 3 unfinished > 2
    assert rec is not None and rec.state == "review" and rec.decision is None
    assert [(d.entry_id, d.attempts) for d in deps.ledger.dead_letters()] == [(entry, 3)]


def _in_review(deps: Deps) -> list[str]:
    return [rec.transaction_id for rec, _ in deps.ledger.in_state(State.REVIEW)]
