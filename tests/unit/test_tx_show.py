"""`vipflow tx show` reads the ledger: the current row, the ordered events with their actors, the
notifications (never their bodies), the rules hash and, with --rules, the exact rule text; on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import redis

from producers.cli import main
from rules import load_rulebook
from tests.conftest import FIXTURES, ROOT
from worker.config import Settings
from worker.ledger import Ledger, State
from worker.ledger.actor import cli_actor
from worker.pipeline import Deps, process
from worker.reload import RuleHolder
from worker.review_service import approve
from worker.store.accounts import AccountCache
from worker.store.archive import Archive
from worker.store.locks import Locks
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry
from worker.wallet.fake import InMemoryWallet

CARD = "7210695258"
PATRON = "P0001234"
PREFIX = "txs"
ACTOR = cli_actor(Settings())
# What the notification carries that must never be shown in clear.
PERSONAL = (CARD, PATRON, "Jane", "4045555555", "22222222", "127.0.0.1")


@dataclass
class World:
    deps: Deps
    vip: FakeVip
    ledger: Ledger


@pytest.fixture
def world(redis_url: str, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    client = redis.Redis.from_url(redis_url)
    ledger = Ledger.open(ledger_url)
    body = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    vip = FakeVip({CARD: AccountInquiry.from_response(body)})
    path = ROOT / "rules" / "default"
    deps = Deps(settings=Settings(), archive=Archive(client, PREFIX), ledger=ledger, locks=Locks(client, PREFIX, 30),
                accounts=AccountCache(client, PREFIX, 300), velocity=VelocityStore(client, PREFIX), vip=vip,
                wallet=InMemoryWallet({PATRON: Decimal("10000.00")}),
                rules=RuleHolder(path, book=load_rulebook(path)), sleep=lambda s: None)
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", ledger_url)
    yield World(deps, vip, ledger)
    ledger.engine.dispose()
    client.close()


def _approved_withdrawal(w: World, txid: str) -> None:
    """A 3,000 withdrawal: frozen and sent to review by the shipped rules, then approved by a reviewer."""
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())
    body.update(transactionId=txid, amount="3000.00", vipCardNumber=CARD, patronId=PATRON,
                maskedBankAccountNumber="**1111", bankRoutingNumber="22222222")
    entry = w.deps.archive.append("withdraw", json.dumps(body).encode(), status="valid", transaction_id=txid,
                                  error=None, route="/vip/notify/withdraw")
    rec = process(entry, w.deps)
    assert rec is not None and rec.state == State.REVIEW
    approve(w.deps, txid, ACTOR, "called the patron", stated_name="alice")


def _show(capsys: pytest.CaptureFixture[str], txid: str, *, as_json: bool = False,
          rules: bool = False) -> tuple[int, str, str]:
    code = main(["tx", "show", txid, *(["--json"] if as_json else []), *(["--rules"] if rules else [])])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_shows_the_row_events_actors_and_notifications(world: World,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives the current row, the events in order with their actors and states, and the notification
    (entry, kind, status, route) without its body."""
    _approved_withdrawal(world, "txshow0001")
    code, out, _ = _show(capsys, "txshow0001", as_json=True)
    assert code == 0
    view = json.loads(out)
    assert set(view) == {"record", "events", "notifications", "labels"} and view["labels"] == []
    assert view["record"]["state"] == "approved" and view["record"]["amount"] == "3000.00"
    events = view["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "received" and "decided" in kinds and "review" in kinds
    assert {e["actor"] for e in events} == {"worker", ACTOR}
    human = [(e["name"], e["status"], e["actor"]) for e in events if e["kind"] == "human"]
    assert human == [("review_approve", "started", ACTOR), ("review_approve", "done", ACTOR)]
    assert events[-1]["state"] == "approved"
    assert ("approve", "done") in [(e["name"], e["status"]) for e in events]  # names survive masking
    decided = next(e for e in events if e["kind"] == "decided")
    assert decided["data"]["decision"]["content_hash"] == view["record"]["decision"]["content_hash"]
    (note,) = view["notifications"]
    assert (note["kind"], note["status"], note["route"]) == ("withdraw", "valid", "/vip/notify/withdraw")
    assert "body" not in note


def test_text_shows_events_actors_and_the_rules_hash(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """The text view names the state, the ruleset hash in full, and each event with its actor."""
    _approved_withdrawal(world, "txshow0002")
    code, out, _ = _show(capsys, "txshow0002")
    assert code == 0
    stored = world.ledger.load("txshow0002")
    assert stored is not None and stored.record.decision is not None
    assert "state APPROVED" in out and f"rules hash {stored.record.decision['content_hash']}" in out
    human = [line for line in out.splitlines() if " human " in line]
    assert len(human) == 2 and all(ACTOR in line and "review_approve" in line for line in human)
    assert any("approve done" in line and " worker " in line for line in out.splitlines())
    assert "/vip/notify/withdraw" in out


def test_rules_prints_the_exact_rule_text(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """--rules prints the text of the ruleset version that decided, exactly as in its file."""
    _approved_withdrawal(world, "txshow0003")
    text = (ROOT / "rules" / "default" / "withdraw.yaml").read_text()
    code, out, _ = _show(capsys, "txshow0003", rules=True)
    assert code == 0 and text.rstrip() in out
    code, out, _ = _show(capsys, "txshow0003", as_json=True, rules=True)
    assert code == 0 and json.loads(out)["rules"]["text"] == text


def test_rules_not_in_the_ledger_says_so(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """A decision whose rule text the ledger lacks says so instead of printing nothing."""
    _approved_withdrawal(world, "txshow0004")
    from sqlalchemy import delete

    from worker.ledger import tables

    with world.ledger.engine.begin() as conn:
        conn.execute(delete(tables.rulesets))
    code, out, _ = _show(capsys, "txshow0004", rules=True)
    assert code == 0 and "is not in the ledger" in out


def test_nothing_personal_in_clear(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither view shows the card number, patron id, name, phone, routing number or IP of the body."""
    _approved_withdrawal(world, "txshow0005")
    for as_json in (False, True):
        code, out, _ = _show(capsys, "txshow0005", as_json=as_json, rules=True)
        assert code == 0
        assert [p for p in PERSONAL if p in out] == []
    assert "******5258" in out  # the card, masked, is still recognisable


def test_no_record_is_one_line_and_exit_2(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown transaction is bad input: one line on stderr, exit 2."""
    code, out, err = _show(capsys, "nosuch0001")
    assert (code, out) == (2, "") and err.strip().count("\n") == 0 and "nosuch0001" in err


def test_a_database_that_does_not_answer_is_one_line_and_exit_1(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """No database at database.url: one line naming the ledger, exit 1, no traceback."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", "postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    code, out, err = _show(capsys, "txshow0006")
    assert (code, out) == (1, "")
    assert err.strip().count("\n") == 0 and "ledger" in err and "Traceback" not in err


def test_the_patron_session_the_decision_knew_is_shown() -> None:
    """tx show names the session a notification was decided against, or that none was issued."""
    from producers.commands.txview import render

    found = {"required": True, "found": True, "amount": "50", "transaction_type": "deposit", "age_s": 12}
    text = render({"transaction_id": "TX1", "state": "approved", "facts": {"session": found}})
    assert "session: deposit of 50.00, opened 12 s before the notification (sessions required)" in text
    text = render({"transaction_id": "TX2", "state": "review", "facts": {"session": {"required": True,
                                                                                     "found": False}}})
    assert "session: none issued for this transaction id (sessions required)" in text
    assert "session:" not in render({"transaction_id": "TX3", "state": "approved", "facts": {}})
