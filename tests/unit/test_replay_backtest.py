"""The dry-run backtest and the re-queue, over ledger records the real pipeline wrote (fakes for VIP and wallet)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from rules import load_rulebook
from tests.conftest import FIXTURES, ROOT
from tests.fakes import BreakableWallet
from worker.backtest import NONE, OUTCOME, RULE_ONLY, UNDECIDED, backtest
from worker.config import Settings
from worker.ledger import Ledger, RecordWriter, State, TransactionRecord
from worker.pipeline import Deps, process
from worker.reload import RuleHolder
from worker.replay import Selection, Stores, force_eligible, make_selection, requeue, select, stores
from worker.store.accounts import AccountCache
from worker.store.publisher import MemoryPublisher
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry

CARD = "7210695258"
PATRON = "P0001234"
PREFIX = "bt"
RULES = ROOT / "rules" / "default"
ACTOR = "os:tester"


@dataclass
class World:
    deps: Deps
    st: Stores
    vip: FakeVip
    wallet: BreakableWallet
    ledger: Ledger


def _world(redis_url: str, database_url: str) -> Iterator[World]:
    client = redis.Redis.from_url(redis_url)
    ledger = Ledger.open(database_url)
    body = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    vip = FakeVip({CARD: AccountInquiry.from_response(body)})
    wallet = BreakableWallet({PATRON: Decimal("100000.00")}, broken=False)
    st = stores(client, PREFIX, ledger, 30)
    deps = Deps(settings=Settings(), archive=st.archive, ledger=ledger, locks=st.locks,
                accounts=AccountCache(client, PREFIX, 300), velocity=VelocityStore(client, PREFIX), vip=vip,
                wallet=wallet, rules=RuleHolder(RULES, book=load_rulebook(RULES)), sleep=lambda s: None)
    yield World(deps, st, vip, wallet, ledger)
    client.close()
    ledger.engine.dispose()


@pytest.fixture
def world(redis_url: str, sqlite_url: str) -> Iterator[World]:
    """The pipeline on a real Redis and an SQLite ledger."""
    yield from _world(redis_url, sqlite_url)


@pytest.fixture
def any_world(redis_url: str, ledger_url: str) -> Iterator[World]:
    """The same, once on SQLite and once on PostgreSQL (the ledger's reads differ by dialect)."""
    yield from _world(redis_url, ledger_url)


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


def _drained(w: World, entry_id: str) -> None:
    """Move one buffered notification into the ledger, as the drain does."""
    entry = w.st.archive.get(entry_id)
    assert entry is not None
    w.ledger.add_notification(entry)


EVERYTHING = make_selection(since="1970-01-01")


def _everything(w: World) -> Any:
    return select(EVERYTHING, w.st)


def _record(w: World, txid: str) -> TransactionRecord:
    stored = w.ledger.load(txid)
    assert stored is not None
    return stored.record


def test_same_rules_give_no_differences(world: World) -> None:
    """Backtesting with the rules that decided shows no difference and equal totals."""
    _decided(world, "wdbt00001", "100.00")
    _decided(world, "wdbt00002", "3000.00")
    report = backtest(EVERYTHING, world.st, load_rulebook(RULES), Settings().limits)
    assert report.differences == [] and report.transactions == 2
    assert report.before == report.after == {"approve": 1, "review": 1}


def _lowered(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    text = (rules / "withdraw.yaml").read_text()
    (rules / "withdraw.yaml").write_text(text.replace("when: {amount: {gt: 2500}}", "when: {amount: {gt: 500}}"))
    return rules


def test_a_lowered_threshold_shows_the_hand_computed_differences(world: World, tmp_path: Path) -> None:
    """large-withdrawal lowered to 500: the 1,000 withdrawal moves approve -> review, the others stay."""
    _decided(world, "wdbt00003", "100.00")
    _decided(world, "wdbt00004", "1000.00")
    _decided(world, "wdbt00005", "3000.00")
    calls = dict(world.vip.calls)
    report = backtest(EVERYTHING, world.st, load_rulebook(_lowered(tmp_path)), Settings().limits)
    assert [(d.transaction_id, d.recorded, d.new, d.added, d.removed) for d in report.differences] == [
        ("wdbt00004", "approve", "review", ("large-withdrawal",), ())]
    assert report.before == {"approve": 2, "review": 1}
    assert report.after == {"approve": 1, "review": 2}
    assert dict(world.vip.calls) == calls  # no VIP call


def test_the_backtest_reads_the_ledger_in_pages_with_the_same_totals(any_world: World, tmp_path: Path) -> None:
    """Over N ledger notifications (a duplicate and an undecided one among them), pages of 2 give the
    same transactions, totals and differences as one page, and each difference is handed on as found."""
    amounts = ("100.00", "1000.00", "3000.00", "700.00", "40.00", "2600.00", "900.00")
    for i, amount in enumerate(amounts):
        entry = _decided(any_world, f"wdbp{i:05d}", amount)
        any_world.st.client.delete(*any_world.st.client.keys(f"{PREFIX}:velocity:*"))  # each on a card of its own
    duplicate = any_world.ledger.notification(entry)
    assert duplicate is not None
    any_world.ledger.add_notification(replace(duplicate, entry_id="9999999999999-0", received_at=9999999999999))
    _drained(any_world, _archive(any_world, "wdbp99999", "800.00"))  # received, never decided
    book = load_rulebook(_lowered(tmp_path))
    whole = backtest(EVERYTHING, any_world.st, book, Settings().limits, page=10_000)
    seen: list[str] = []
    progress: list[tuple[int, int]] = []
    paged = backtest(EVERYTHING, any_world.st, book, Settings().limits, page=2, keep=1,
                     on_difference=lambda d: seen.append(d.transaction_id),
                     on_progress=lambda done, total: progress.append((done, total)))
    assert paged.totals() == whole.totals()
    assert whole.transactions == len(amounts) + 1 and whole.totals()["differences"] == 4
    assert (whole.decided, whole.outcome_changes, whole.never_decided) == (len(amounts), 3, 1)
    assert seen == [d.transaction_id for d in whole.differences] and len(paged.differences) == 1
    assert progress == [(2, 9), (4, 9), (6, 9), (8, 9), (9, 9)]
    assert whole.before == {"approve": 5, "review": 2, NONE: 1}
    assert whole.after == {"approve": 2, "review": 6}  # 1000, 700, 900 now over 500; the undecided one


def _with_rule(tmp_path: Path, rule: str) -> Path:
    """The shipped rules with one more withdraw rule (YAML text of one list item)."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules, dirs_exist_ok=True)
    path = rules / "withdraw.yaml"
    path.write_text(path.read_text().replace("rules:\n", "rules:\n" + rule, 1))
    return rules


def test_a_rule_only_change_is_counted_apart_from_outcome_changes(world: World, tmp_path: Path) -> None:
    """A new review rule that a reviewed withdrawal also matches changes its rules, not its outcome: it is a
    rule-only change, out of the headline; the approved one it sends to review is an outcome change."""
    _decided(world, "wdbt00021", "3000.00")  # review: large-withdrawal
    _decided(world, "wdbt00022", "2100.00")  # approve
    rules = _with_rule(tmp_path, "  - id: above-2000\n    when: {amount: {gt: 2000}}\n    outcome: review\n")
    report = backtest(EVERYTHING, world.st, load_rulebook(rules), Settings().limits)
    assert {(d.transaction_id, d.change, d.recorded, d.new, d.added) for d in report.differences} == {
        ("wdbt00021", RULE_ONLY, "review", "review", ("above-2000",)),
        ("wdbt00022", OUTCOME, "approve", "review", ("above-2000",))}
    assert (report.decided, report.outcome_changes, report.rule_changes, report.never_decided) == (2, 1, 1, 0)
    totals = report.totals()
    assert (totals["outcome_changes"], totals["rule_changes"], totals["decided_before"]) == (1, 1, 2)


def test_unchanged_decisions_are_not_differences(world: World) -> None:
    """The same rules on decided transactions: nothing counted as decided differently."""
    _decided(world, "wdbt00023", "3000.00")
    report = backtest(EVERYTHING, world.st, load_rulebook(RULES), Settings().limits)
    assert (report.decided, report.different, report.outcome_changes) == (1, 0, 0)


def test_a_notification_never_decided_shows_none_recorded(world: World) -> None:
    """A notification in the ledger that was never decided is decided on its own facts and shown as
    (none) recorded, and nothing is written."""
    _drained(world, _archive(world, "wdbt00006", "100.00"))
    report = backtest(EVERYTHING, world.st, load_rulebook(RULES), Settings().limits)
    [diff] = report.differences
    assert (diff.transaction_id, diff.recorded, diff.new, diff.change) == ("wdbt00006", NONE, "review", UNDECIDED)
    assert "account-lookup-unavailable" in diff.added
    assert (report.outcome_changes, report.never_decided, report.decided) == (0, 1, 0)
    assert world.ledger.load("wdbt00006") is None  # nothing written


def test_a_backtest_by_id_reads_the_buffer_too(world: World) -> None:
    """--id finds a notification still only in the intake buffer and decides it on its body."""
    _archive(world, "wdbt00016", "100.00")
    report = backtest(make_selection(ids=["wdbt00016"]), world.st, load_rulebook(RULES), Settings().limits)
    assert report.transactions == 1 and report.before == {NONE: 1}


def test_requeued_completed_transactions_are_not_acted_on_again(world: World) -> None:
    """Re-queueing an approved transaction and running the tasks gives no second approval or hold."""
    _decided(world, "wdbt00007", "100.00")
    publisher = MemoryPublisher()
    report = requeue(_everything(world), world.st, publisher)
    assert report.selected == report.queued == 1 and report.already_final == 1
    for entry_id in publisher.published:
        rec = process(entry_id, world.deps)
        assert rec is not None and rec.state == "approved"
    assert world.vip.approvals["wdbt00007"] == 1
    assert world.wallet.holds_created["wdbt00007"] == 1


def _failed_once(w: World, txid: str) -> str:
    """A withdrawal decided approve whose freeze crashed: in review for an unexpected error."""
    w.wallet.broken = True
    entry = _decided(w, txid, "100.00")
    w.wallet.broken = False
    rec = _record(w, txid)
    assert rec.state == State.REVIEW and (rec.review_reason or "").startswith("unexpected RuntimeError")
    return entry


def test_force_redecides_a_failed_review_but_never_an_approval(world: World) -> None:
    """--force re-decides a review caused by a failure (it leaves review) but leaves an approved one alone."""
    _decided(world, "wdbt00008", "100.00")
    _failed_once(world, "wdbt00009")
    assert force_eligible(_record(world, "wdbt00009"))
    assert not force_eligible(_record(world, "wdbt00008"))
    publisher = MemoryPublisher()
    report = requeue(_everything(world), world.st, publisher, force=True, actor=ACTOR)
    assert report.redecided == ["wdbt00009"]
    assert [r.transaction_id for r, _ in world.ledger.in_state(State.REVIEW)] == []
    for entry_id in publisher.published:
        process(entry_id, world.deps)
    assert _record(world, "wdbt00009").state == "approved"
    assert world.vip.approvals == {"wdbt00008": 1, "wdbt00009": 1}
    assert world.wallet.holds_created == {"wdbt00008": 1, "wdbt00009": 1}


def test_a_forced_replay_keeps_the_first_decisions_events(any_world: World) -> None:
    """A forced replay appends: the events before it are a prefix of the events after, with a replay event
    naming the operator and a second decided event."""
    _failed_once(any_world, "wdbt00011")
    before = any_world.ledger.events("wdbt00011")
    assert [e.kind for e in before].count("decided") == 1
    publisher = MemoryPublisher()
    report = requeue(select(make_selection(ids=["wdbt00011"]), any_world.st), any_world.st, publisher, force=True,
                     actor=ACTOR)
    assert report.redecided == ["wdbt00011"]
    for entry_id in publisher.published:
        process(entry_id, any_world.deps)
    after = any_world.ledger.events("wdbt00011")
    assert after[:len(before)] == before
    added = after[len(before):]
    replay = added[0]
    assert (replay.kind, replay.name, replay.actor, replay.state) == ("replay", "redecide", ACTOR, "received")
    assert replay.data is not None and replay.data["outcome"] == "approve" and replay.data["state"] == "review"
    assert [e.kind for e in after].count("decided") == 2
    assert after[-1].state == "approved"


def test_force_needs_an_actor(world: World) -> None:
    """A forced replay records who asked: without an actor it refuses before touching anything."""
    _failed_once(world, "wdbt00012")
    with pytest.raises(ValueError, match="actor"):
        requeue(_everything(world), world.st, MemoryPublisher(), force=True)
    assert _record(world, "wdbt00012").state == State.REVIEW


def test_a_review_the_rules_asked_for_is_not_forced(world: World) -> None:
    """A review decided by the rules is a decision acted on: --force leaves it to a person."""
    _decided(world, "wdbt00010", "3000.00")
    assert not force_eligible(_record(world, "wdbt00010"))


def test_a_transaction_in_flight_is_not_forced(world: World) -> None:
    """A decided transaction whose action has not finished cannot go back to received: not eligible."""
    lock = world.st.locks.lock("wdbt00013")
    lock.acquire()
    RecordWriter(world.ledger, lock, None)(TransactionRecord("wdbt00013", state=State.DECIDED))
    lock.release()
    assert not force_eligible(_record(world, "wdbt00013"))


def test_a_stop_request_ends_the_requeue_early(world: World) -> None:
    """A stop request between items ends the re-queue, saying it was interrupted and how far it got."""
    for i in range(3):
        _drained(world, _archive(world, f"wdbt0010{i}", "100.00"))
    publisher = MemoryPublisher()
    report = requeue(_everything(world), world.st, publisher, should_stop=lambda: len(publisher.published) >= 2)
    assert report.interrupted and report.queued == 2 == len(publisher.published) and report.selected == 3


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
    report = backtest(EVERYTHING, world.st, load_rulebook(rules), Settings().limits)
    assert report.unasked == {"wallet": 1} and report.totals()["unasked"] == {"wallet": 1}
    assert [(d.transaction_id, d.added) for d in report.differences] == [("dpbt00001", ("wallet-unknown",))]
    same = backtest(EVERYTHING, world.st, load_rulebook(RULES), Settings().limits)
    assert not same.unasked


def test_a_time_window_narrows_the_backtest(world: World) -> None:
    """Notifications received outside --since/--until are not decided."""
    _decided(world, "wdbt00014", "100.00")
    stored = world.ledger.notifications_of("wdbt00014")[0]
    after = Selection(since_ms=stored.received_at + 1)
    assert backtest(after, world.st, load_rulebook(RULES), Settings().limits).transactions == 0
    until = Selection(until_ms=stored.received_at)
    assert backtest(until, world.st, load_rulebook(RULES), Settings().limits).transactions == 1
