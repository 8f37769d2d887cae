"""Lists through the real pipeline (Redis, a SQLite ledger, fakes for VIP and the wallet): decisions record the
list versions, a list change reaches the next decision, and the backtest decides with today's lists."""

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
from worker.backtest import backtest
from worker.config import Settings
from worker.ledger import Ledger
from worker.lists.holder import ListHolder
from worker.lists.store import ListStore
from worker.pipeline import Deps, process
from worker.reload import RuleHolder
from worker.replay import Stores, make_selection, stores
from worker.store.accounts import AccountCache
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry

CARD = "7210695258"
PATRON = "P0001234"
PREFIX = "lp"
BLOCKED = """
  - id: blocked-card
    description: The VIP card is on the blocked list
    when: {vip_card_number: {in_list: blocked-cards}}
    outcome: reject
"""


@dataclass
class World:
    deps: Deps
    st: Stores
    store: ListStore
    holder: ListHolder
    rules: Path


@pytest.fixture
def world(redis_url: str, sqlite_url: str, tmp_path: Path) -> Iterator[World]:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules" / "default", rules)
    with (rules / "withdraw.yaml").open("a", encoding="utf-8") as f:
        f.write(BLOCKED)
    client = redis.Redis.from_url(redis_url)
    ledger = Ledger.open(sqlite_url)
    store = ListStore(ledger.engine)
    store.create("blocked-cards", "card", "os:tester")
    holder = ListHolder(store)
    body = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    st = stores(client, PREFIX, ledger, 30)
    deps = Deps(settings=Settings(), archive=st.archive, ledger=ledger, locks=st.locks,
                accounts=AccountCache(client, PREFIX, 300), velocity=VelocityStore(client, PREFIX),
                vip=FakeVip({CARD: AccountInquiry.from_response(body)}),
                wallet=BreakableWallet({PATRON: Decimal("100000.00")}, broken=False),
                rules=RuleHolder(rules, book=load_rulebook(rules), accept=holder.require), sleep=lambda s: None,
                lists=holder)
    yield World(deps, st, store, holder, rules)
    client.close()
    ledger.engine.dispose()


def _decide(w: World, txid: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())
    body.update(transactionId=txid, amount="100.00", vipCardNumber=CARD, patronId=PATRON,
                maskedBankAccountNumber="**1111", bankRoutingNumber="22222222")
    entry = w.st.archive.append("withdraw", json.dumps(body).encode(), status="valid", transaction_id=txid,
                                error=None)
    rec = process(entry, w.deps)
    assert rec is not None
    for key in w.st.client.scan_iter(f"{PREFIX}:velocity:*"):  # each decided as the card's first try
        w.st.client.delete(key)
    return rec.to_dict()


def test_a_card_added_to_the_list_is_rejected_on_the_next_decision_which_records_the_version(world: World) -> None:
    """Approved while the list is empty (v1); after `add` and the holder's check, the same card is rejected,
    and each decided event records the list version it used."""
    first = _decide(world, "wdlp00001")
    assert (first["state"], first["decision"]["lists"]) == ("approved", {"blocked-cards": 1})
    world.store.add("blocked-cards", [CARD], "os:tester")
    assert world.holder.check() is True
    second = _decide(world, "wdlp00002")
    assert second["state"] == "rejected"
    assert second["decision"]["matched"][-1]["id"] == "blocked-card"
    decided = next(e for e in world.deps.ledger.events("wdlp00002") if e.kind == "decided")
    assert decided.data is not None and decided.data["decision"]["lists"] == {"blocked-cards": 2}


def test_a_list_missing_at_decision_time_sends_to_review_never_approves(world: World) -> None:
    """Rules naming a list the worker does not hold are an error of the decision: review, not approval."""
    world.deps = replace(world.deps, lists=None)
    rec = _decide(world, "wdlp00003")
    assert rec["state"] == "review"
    assert rec["decision"] is None


def test_the_backtest_decides_with_todays_lists_and_counts_older_versions(world: World) -> None:
    """A withdrawal approved with the list empty would be rejected now; the report says the lists changed."""
    _decide(world, "wdlp00004")
    world.store.add("blocked-cards", [CARD], "os:tester")
    book = load_rulebook(world.rules)
    lists = world.store.load_named(book.list_names)
    report = backtest(make_selection(since="1970-01-01"), world.st, book, Settings().limits, lists=lists)
    assert [(d.transaction_id, d.recorded, d.new, d.added) for d in report.differences] == [
        ("wdlp00004", "approve", "reject", ("blocked-card",))]
    assert (report.lists, report.other_list_versions) == ({"blocked-cards": 2}, 1)


def test_tx_show_names_the_list_versions_and_masks_the_list_facts(world: World) -> None:
    """`tx show` says which list versions decided; the routing number and the device address stay masked."""
    from producers.commands.txview import render, tx_view

    world.store.add("blocked-cards", [CARD], "os:tester")
    world.holder.check()
    _decide(world, "wdlp00005")
    view = tx_view(world.deps.ledger, "wdlp00005")
    assert view is not None
    out = render(view["record"], view["events"], view["notifications"])
    assert "  lists blocked-cards v2" in out
    assert CARD not in out and "22222222" not in out
    location = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())["location"]
    assert view["record"]["facts"]["location"] == "***" and location not in json.dumps(view["record"]["facts"])


def test_the_backtest_can_hold_the_lists_as_each_decision_saw_them(world: World) -> None:
    """--lists-as-decided: the same rules against the list version each decision recorded show no change."""
    from worker.lists.versions import ListsAsDecided

    _decide(world, "wdlp00006")  # approved with blocked-cards v1 (empty)
    world.store.add("blocked-cards", [CARD], "os:tester")
    world.holder.check()
    _decide(world, "wdlp00007")  # rejected with v2
    book = load_rulebook(world.rules)
    now = world.store.load_named(book.list_names)
    selection = make_selection(since="1970-01-01")
    as_now = backtest(selection, world.st, book, Settings().limits, lists=now)
    held = backtest(selection, world.st, book, Settings().limits, lists=now,
                    as_decided=ListsAsDecided(world.store, now).at)
    assert [d.transaction_id for d in as_now.differences] == ["wdlp00006"]
    assert held.differences == [] and held.after == {"approve": 1, "reject": 1}
    assert held.lists == {"blocked-cards": 2}


def test_replay_dry_run_prints_the_list_versions_it_decided_with(world: World, redis_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`replay --dry-run` names the lists as they are now and the older versions; --lists-as-decided holds them."""
    from producers.cli import main

    _decide(world, "wdlp00008")
    world.store.add("blocked-cards", [CARD], "os:tester")
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", str(world.deps.ledger.engine.url))
    monkeypatch.setenv("VIPFLOW_REDIS__URL", redis_url)
    monkeypatch.setenv("VIPFLOW_REDIS__KEY_PREFIX", PREFIX)
    monkeypatch.setenv("VIPFLOW_RULES__PATH", str(world.rules))
    assert main(["replay", "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal's width
    assert "1 of 1 transaction decided before would get another outcome" in out
    assert "lists as they are now: blocked-cards v2" in out
    assert "note: 1 transaction decided before was decided with other versions of these lists" in out
    assert main(["replay", "--dry-run", "--lists-as-decided"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "0 of 1 transaction decided before would get another outcome" in out
    assert "lists at the versions each decision used (--lists-as-decided); the newest: blocked-cards v1" in out
