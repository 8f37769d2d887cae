"""Shadow rules: decided beside the live rules with the same facts, recorded, counted, never acted on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from producers.commands.txview import render
from rules import RuleBook, RuleError, load_rulebook
from tests.conftest import FIXTURES, ROOT
from worker.config import RulesSettings, Settings
from worker.ledger import Ledger
from worker.masking import mask_mapping
from worker.pipeline import Deps, process
from worker.reload import RuleHolder
from worker.shadow import shadow_holder
from worker.store.accounts import AccountCache
from worker.store.archive import Archive
from worker.store.locks import Locks
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry
from worker.wallet.fake import InMemoryWallet

CARD = "7210695258"
PATRON = "P0001234"
PREFIX = "sh"

# A candidate that turns every deposit the live rules approve into a reject (and withdrawals into approvals).
SHADOW_DEPOSIT = """\
ruleset: deposit
version: 9
default: reject
freeze_on: []
rules:
  - id: shadow-deposit-huge
    description: candidate rule, reviews huge deposits
    when: {amount: {gt: 90000}}
    outcome: review
"""
SHADOW_DEPOSIT_TEST = """\
ruleset: deposit
cases:
  - name: a small deposit is rejected by the candidate
    facts: {amount: 10}
    expect: {outcome: reject, matched: []}
"""
SHADOW_WITHDRAW = """\
ruleset: withdraw
version: 9
default: approve
freeze_on: [approve]
rules:
  - id: shadow-withdraw-small
    description: candidate rule, approves small withdrawals
    when: {amount: {lte: 50000}}
    outcome: approve
"""
SHADOW_WITHDRAW_TEST = """\
ruleset: withdraw
cases:
  - name: a small withdrawal is approved by the candidate
    facts: {amount: 10}
    expect: {outcome: approve, matched: [shadow-withdraw-small]}
"""


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return load_rulebook(ROOT / "rules" / "default")


@pytest.fixture
def shadow_dir(tmp_path: Path) -> Path:
    d = tmp_path / "candidate"
    d.mkdir()
    for name, text in (("deposit.yaml", SHADOW_DEPOSIT), ("deposit_test.yaml", SHADOW_DEPOSIT_TEST),
                       ("withdraw.yaml", SHADOW_WITHDRAW), ("withdraw_test.yaml", SHADOW_WITHDRAW_TEST)):
        (d / name).write_text(text)
    return d


@dataclass
class World:
    deps: Deps
    vip: FakeVip
    wallet: InMemoryWallet
    archive: Archive


@pytest.fixture
def world(redis_url: str, book: RuleBook, shadow_dir: Path, ledger: Ledger) -> Iterator[World]:
    client = redis.Redis.from_url(redis_url)
    body = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    vip = FakeVip({CARD: AccountInquiry.from_response(body)})
    wallet = InMemoryWallet({PATRON: Decimal("10000.00")})
    deps = Deps(settings=Settings(), archive=Archive(client, PREFIX), ledger=ledger,
                locks=Locks(client, PREFIX, 30), accounts=AccountCache(client, PREFIX, 300),
                velocity=VelocityStore(client, PREFIX), vip=vip, wallet=wallet,
                rules=RuleHolder(ROOT / "rules" / "default", book=book), sleep=lambda s: None,
                shadow=RuleHolder(shadow_dir))
    yield World(deps, vip, wallet, deps.archive)
    client.close()


def _notify(w: World, kind: str, txid: str, amount: str) -> str:
    name = "deposit-approval-request.json" if kind == "deposit" else "withdraw-approval-request.json"
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / name).read_text())
    if kind == "deposit":
        body.update(TransactionId=txid, Amount=amount, VipCardNumber=CARD, PatronId=PATRON)
    else:
        body.update(transactionId=txid, amount=amount, vipCardNumber=CARD, patronId=PATRON,
                    maskedBankAccountNumber="**1111", bankRoutingNumber="22222222")
    return w.archive.append(kind, json.dumps(body).encode(), status="valid", transaction_id=txid, error=None)


def _shadow_count(live: str, shadow: str) -> float:
    return REGISTRY.get_sample_value("vipflow_shadow_decisions_total", {"live": live, "shadow": shadow}) or 0.0


def test_shadow_reject_is_recorded_but_the_live_approval_stands(world: World) -> None:
    """Live approves, shadow rejects: one approval is made and the shadow's reject is only recorded."""
    rec = process(_notify(world, "deposit", "shdep0001", "89.76"), world.deps)
    assert rec is not None and rec.state == "approved" and world.vip.approvals["shdep0001"] == 1
    assert rec.decision is not None and rec.decision["outcome"] == "approve"
    assert rec.shadow_decision is not None
    assert (rec.shadow_decision["outcome"], rec.shadow_decision["version"]) == ("reject", 9)
    assert not any(a.name == "reject" for a in rec.actions)


def test_shadow_approval_is_never_acted_on(world: World) -> None:
    """Live reviews a large withdrawal, shadow approves it: no approval call, still in review."""
    rec = process(_notify(world, "withdraw", "shwd0001", "3000.00"), world.deps)
    assert rec is not None and rec.state == "review"
    assert world.vip.calls["approve"] == 0
    assert rec.shadow_decision is not None and rec.shadow_decision["outcome"] == "approve"
    assert [m["id"] for m in rec.shadow_decision["matched"]] == ["shadow-withdraw-small"]


def test_shadow_decision_survives_storage(world: World) -> None:
    """The stored record (what `vipflow tx show` reads) carries both decisions."""
    process(_notify(world, "deposit", "shdep0002", "89.76"), world.deps)
    held = world.deps.ledger.load("shdep0002")
    stored = held.record if held is not None else None
    assert stored is not None and stored.decision is not None and stored.shadow_decision is not None
    assert (stored.decision["outcome"], stored.shadow_decision["outcome"]) == ("approve", "reject")


def test_outcome_pairs_are_counted(world: World) -> None:
    """Each decision adds one to the metric of its (live, shadow) outcome pair."""
    before = _shadow_count("approve", "reject")
    process(_notify(world, "deposit", "shdep0003", "89.76"), world.deps)
    process(_notify(world, "deposit", "shdep0004", "50.00"), world.deps)
    assert _shadow_count("approve", "reject") == before + 2


def test_redelivery_does_not_decide_the_shadow_again(world: World) -> None:
    """A redelivered task neither re-decides nor re-counts the shadow."""
    entry = _notify(world, "deposit", "shdep0005", "89.76")
    process(entry, world.deps)
    before = _shadow_count("approve", "reject")
    process(entry, world.deps)
    assert _shadow_count("approve", "reject") == before


def test_a_failing_shadow_never_stops_the_live_decision(world: World, tmp_path: Path) -> None:
    """A shadow without a ruleset for the type records an error; the live rules still decide and act."""
    only_deposit = tmp_path / "only-deposit"
    only_deposit.mkdir()
    (only_deposit / "deposit.yaml").write_text(SHADOW_DEPOSIT)
    (only_deposit / "deposit_test.yaml").write_text(SHADOW_DEPOSIT_TEST)
    deps = replace(world.deps, shadow=RuleHolder(only_deposit))
    rec = process(_notify(world, "withdraw", "shwd0002", "100.00"), deps)
    assert rec is not None and rec.state == "approved" and world.vip.approvals["shwd0002"] == 1
    assert rec.shadow_decision is not None and "error" in rec.shadow_decision


def test_tx_show_text_shows_both_decisions(world: World) -> None:
    """The text view lists the live decision and the shadow one, saying that they differ."""
    rec = process(_notify(world, "deposit", "shdep0006", "89.76"), world.deps)
    assert rec is not None
    text = render(mask_mapping(rec.to_dict()))
    assert "decision: APPROVE" in text
    assert "shadow decision (never acted on): REJECT" in text and "DIFFERS from live" in text


def test_without_shadow_rules_nothing_is_recorded(world: World) -> None:
    """rules.shadow unset: no shadow decision on the record."""
    rec = process(_notify(world, "deposit", "shdep0007", "89.76"), replace(world.deps, shadow=None))
    assert rec is not None and rec.shadow_decision is None


def test_a_shadow_failing_its_own_tests_is_refused_at_start(tmp_path: Path) -> None:
    """rules.shadow goes through the live rules' acceptance checks: a failing test case stops the start."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "deposit.yaml").write_text(SHADOW_DEPOSIT)
    (bad / "deposit_test.yaml").write_text(SHADOW_DEPOSIT_TEST.replace("outcome: reject", "outcome: approve"))
    with pytest.raises(RuleError):
        shadow_holder(Settings(rules=RulesSettings(shadow=bad)))


def test_no_shadow_configured_gives_no_holder() -> None:
    """rules.shadow null (the default): no shadow holder."""
    assert shadow_holder(Settings()) is None


def test_tx_show_names_the_actions(world: World, redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`vipflow tx show` lists action names (masking hides every 'name' key; actions are put back)."""
    import argparse

    from producers.commands.tx_cmd import run_tx_show

    process(_notify(world, "withdraw", "shwd0003", "100.00"), world.deps)
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_REDIS__URL", redis_url)
    monkeypatch.setenv("VIPFLOW_REDIS__KEY_PREFIX", PREFIX)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", str(world.deps.ledger.engine.url))
    assert run_tx_show(argparse.Namespace(transaction_id="shwd0003", json=True, rules=False, config=None)) == 0
    shown = json.loads(capsys.readouterr().out)["record"]
    assert [a["name"] for a in shown["actions"] if a["status"] == "done"] == ["freeze", "approve", "capture"]
    assert shown["shadow_decision"]["outcome"] == "approve"
