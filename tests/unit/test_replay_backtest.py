"""The dry-run backtest and the re-queue, over records the real pipeline wrote (fakes for VIP and wallet)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from rules import load_rulebook
from tests.conftest import FIXTURES, ROOT
from worker.backtest import NONE, backtest
from worker.config import Settings
from worker.pipeline import Deps, process
from worker.reload import RuleHolder
from worker.replay import Stores, force_eligible, make_selection, requeue, select, stores
from worker.store.accounts import AccountCache
from worker.store.publisher import MemoryPublisher
from worker.store.records import TransactionRecord
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry
from worker.wallet.fake import InMemoryWallet

CARD = "7210695258"
PATRON = "P0001234"
PREFIX = "bt"
RULES = ROOT / "rules" / "default"


@dataclass
class World:
    deps: Deps
    st: Stores
    vip: FakeVip


@pytest.fixture
def world(redis_url: str) -> Iterator[World]:
    client = redis.Redis.from_url(redis_url)
    body = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    vip = FakeVip({CARD: AccountInquiry.from_response(body)})
    st = stores(client, PREFIX, 30)
    deps = Deps(settings=Settings(), archive=st.archive, records=st.records, reviews=st.reviews,
                accounts=AccountCache(client, PREFIX, 300), velocity=VelocityStore(client, PREFIX), vip=vip,
                wallet=InMemoryWallet({PATRON: Decimal("100000.00")}),
                rules=RuleHolder(RULES, book=load_rulebook(RULES)), sleep=lambda s: None)
    yield World(deps, st, vip)
    client.close()


def _archive(w: World, txid: str, amount: str) -> str:
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())
    body.update(transactionId=txid, amount=amount, vipCardNumber=CARD, patronId=PATRON,
                maskedBankAccountNumber="**1111", bankRoutingNumber="22222222")
    return w.st.archive.append("withdraw", json.dumps(body).encode(), status="valid", transaction_id=txid,
                               error=None)


def _decided(w: World, txid: str, amount: str) -> str:
    entry = _archive(w, txid, amount)
    assert process(entry, w.deps) is not None
    return entry


def _everything(w: World) -> list[Any]:
    return select(make_selection(since="1970-01-01"), w.st)[0]


def test_same_rules_give_no_differences(world: World) -> None:
    """Backtesting with the rules that decided shows no difference and equal totals."""
    _decided(world, "wdbt00001", "100.00")
    _decided(world, "wdbt00002", "3000.00")
    report = backtest(_everything(world), world.st, load_rulebook(RULES), Settings().limits)
    assert report.differences == [] and report.transactions == 2
    assert report.before == report.after == {"approve": 1, "review": 1}


def test_a_lowered_threshold_shows_the_hand_computed_differences(world: World, tmp_path: Path) -> None:
    """large-withdrawal lowered to 500: the 1,000 withdrawal moves approve -> review, the others stay."""
    _decided(world, "wdbt00003", "100.00")
    _decided(world, "wdbt00004", "1000.00")
    _decided(world, "wdbt00005", "3000.00")
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    text = (rules / "withdraw.yaml").read_text()
    (rules / "withdraw.yaml").write_text(text.replace("when: {amount: {gt: 2500}}", "when: {amount: {gt: 500}}"))
    calls = dict(world.vip.calls)
    report = backtest(_everything(world), world.st, load_rulebook(rules), Settings().limits)
    assert [(d.transaction_id, d.recorded, d.new, d.added, d.removed) for d in report.differences] == [
        ("wdbt00004", "approve", "review", ("large-withdrawal",), ())]
    assert report.before == {"approve": 2, "review": 1}
    assert report.after == {"approve": 1, "review": 2}
    assert dict(world.vip.calls) == calls  # no VIP call


def test_a_notification_never_decided_shows_none_recorded(world: World) -> None:
    """An archived, never-decided notification is decided on its own facts and shown as (none) recorded."""
    _archive(world, "wdbt00006", "100.00")
    report = backtest(_everything(world), world.st, load_rulebook(RULES), Settings().limits)
    [diff] = report.differences
    assert (diff.transaction_id, diff.recorded, diff.new) == ("wdbt00006", NONE, "review")
    assert "account-lookup-unavailable" in diff.added
    assert world.st.records.load("wdbt00006") is None  # nothing written


def test_requeued_completed_transactions_are_not_acted_on_again(world: World) -> None:
    """Re-queueing an approved transaction and running the tasks gives no second approval or hold."""
    _decided(world, "wdbt00007", "100.00")
    publisher = MemoryPublisher()
    report = requeue(_everything(world), world.st, publisher)
    assert report.queued == 1 and report.already_final == 1
    for entry_id in publisher.published:
        rec = process(entry_id, world.deps)
        assert rec is not None and rec.state == "approved"
    assert world.vip.approvals["wdbt00007"] == 1


def test_force_redecides_a_failed_review_but_never_an_approval(world: World) -> None:
    """--force clears a review caused by a failure (and unqueues it) but leaves an approved one alone."""
    _decided(world, "wdbt00008", "100.00")
    entry = _archive(world, "wdbt00009", "100.00")
    lock = world.st.records.lock("wdbt00009")
    lock.acquire()
    world.st.records.save(TransactionRecord("wdbt00009", state="review",
                                            review_reason="unexpected KeyError while processing"), lock)
    lock.release()
    world.st.reviews.enqueue("wdbt00009")
    world.st.archive.mark_processed(entry)
    assert force_eligible(world.st.records.load("wdbt00009"))
    assert not force_eligible(world.st.records.load("wdbt00008"))
    publisher = MemoryPublisher()
    report = requeue(_everything(world), world.st, publisher, force=True)
    assert report.redecided == ["wdbt00009"]
    assert world.st.reviews.get("wdbt00009") is None
    for entry_id in publisher.published:
        process(entry_id, world.deps)
    rec = world.st.records.load("wdbt00009")
    assert rec is not None and rec.state == "approved"
    assert world.vip.approvals == {"wdbt00008": 1, "wdbt00009": 1}


def test_a_review_the_rules_asked_for_is_not_forced(world: World) -> None:
    """A review decided by the rules is a decision acted on: --force leaves it to a person."""
    _decided(world, "wdbt00010", "3000.00")
    assert not force_eligible(world.st.records.load("wdbt00010"))


def test_a_stop_request_ends_the_requeue_early(world: World) -> None:
    """A stop request between items ends the re-queue, saying it was interrupted and how far it got."""
    for i in range(3):
        _archive(world, f"wdbt0010{i}", "100.00")
    publisher = MemoryPublisher()
    report = requeue(_everything(world), world.st, publisher, should_stop=lambda: len(publisher.published) >= 2)
    assert report.interrupted and report.queued == 2 == len(publisher.published)


def test_candidate_rules_reading_an_unasked_source_are_flagged(world: World, tmp_path: Path) -> None:
    """A deposit decided by the shipped rules never asked the wallet; a candidate that reads
    wallet.balance for deposits sees it unknown, and the report counts that transaction."""
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "deposit-approval-request.json").read_text())
    body.update(TransactionId="dpbt00001", Amount="89.76", VipCardNumber=CARD, PatronId=PATRON)
    entry = world.st.archive.append("deposit", json.dumps(body).encode(), status="valid",
                                    transaction_id="dpbt00001", error=None)
    rec = process(entry, world.deps)
    assert rec is not None and rec.unasked == ("wallet",)
    _decided(world, "wdbt00010", "100.00")  # a withdrawal asked the wallet: not counted
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    text = (rules / "deposit.yaml").read_text()
    (rules / "deposit.yaml").write_text(text.replace("rules:\n", "rules:\n  - id: wallet-unknown\n"
                                                     "    when: {wallet.balance: {exists: false}}\n"
                                                     "    outcome: review\n\n", 1))
    report = backtest(_everything(world), world.st, load_rulebook(rules), Settings().limits)
    assert report.unasked == {"wallet": 1} and report.totals()["unasked"] == {"wallet": 1}
    assert [(d.transaction_id, d.added) for d in report.differences] == [("dpbt00001", ("wallet-unknown",))]
    same = backtest(_everything(world), world.st, load_rulebook(RULES), Settings().limits)
    assert not same.unasked
