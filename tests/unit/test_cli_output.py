"""Output people copy from: whole transaction ids, money with two decimals, vipflow's own words never
masked, and the facts behind a decision without --json; through the real dispatcher."""

from __future__ import annotations

import dataclasses
import json

import pytest

from producers.cli import main
from rules.money import format_amount
from tests.conftest import archived_note
from worker.ledger import Ledger, NotificationSeen, State, TransactionRecord

LONG_ID = "simq8x0k2m4n6p1r3t5v7w03a"  # 25 characters, VIP Connect's longest
FACTS = {"transaction_type": "withdraw", "amount": "351", "patron_id": "P0001234", "vip_card_number": "7210695258",
         "bank_name": "Bank XYZ", "account": {"found": True, "available_amount": "4500.0"},
         "velocity": {"count_24h": 3, "amount_24h": "61.9"}}


@pytest.fixture
def ledger_url(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ledger with one withdrawal of 351 waiting for review, frozen first, whose wallet answer carries a
    patron's name under ``name`` (to be masked) beside vipflow's own action names (never masked)."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    decision = {"outcome": "review", "matched": [{"id": "large-withdrawal", "outcome": "review",
                                                  "description": "big"}],
                "ruleset": "withdraw", "version": 1, "content_hash": "a" * 64, "used_default": False}
    with Ledger.open(sqlite_url) as ledger:
        note = archived_note("1700000000000-0", LONG_ID)
        ledger.add_notifications([note], done=[note.entry_id])
        seen = NotificationSeen(note.entry_id, "withdraw", "valid", "2023-11-14T22:13:20Z")
        rec = TransactionRecord(LONG_ID, transaction_type="withdraw", amount="351").with_notification(seen)
        stored = ledger.write(None, dataclasses.replace(rec, decision=decision, facts=FACTS).moved(State.DECIDED))
        rec = stored.record.with_action("freeze", "started", {"amount": "351"})
        rec = rec.with_action("freeze", "done", {"amount": "351", "name": "Jane Roe", "status": "held"})
        stored = ledger.write(stored, rec.moved(State.FROZEN))
        rec = stored.record.with_action("review", "done", {"reason": "the rules said review"})
        ledger.write(stored, dataclasses.replace(rec, review_reason="the rules said review").moved(State.REVIEW))
    return sqlite_url


def _out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_amounts_are_shown_with_two_decimals() -> None:
    """61.9 is 61.90 and 351 is 351.00; more decimals are never rounded away; unknown is ?."""
    assert [format_amount(v) for v in ("61.9", "351", 351, "1.234", None, "0")] == [
        "61.90", "351.00", "351.00", "1.234", "?", "0.00"]


@pytest.mark.parametrize("columns", ["40", "200"])
def test_review_list_never_cuts_a_transaction_id(columns: str, ledger_url: str, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """On a narrow terminal and a wide one the id is whole on one line (it is pasted into review approve),
    and the amount reads 351.00."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: a terminal, COLUMNS wide
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", columns)
    out = _out(capsys, "review", "list")
    assert f" {LONG_ID} " in out and " 351.00 " in out


def test_review_list_into_a_file_keeps_every_column_whole(ledger_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Into a pipe or a file, each row is one line: nothing folded, nothing cut."""
    out = _out(capsys, "review", "list")
    [row] = [line for line in out.splitlines() if LONG_ID in line]
    assert "351.00" in row and "large-withdrawal" in row and "the rules said review" in row


def test_review_list_json_has_two_decimal_amounts(ledger_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives the amount as the string 351.00."""
    [line] = _out(capsys, "review", "list", "--json").splitlines()
    assert json.loads(line)["amount"] == "351.00" and json.loads(line)["transaction_id"] == LONG_ID


@pytest.mark.parametrize("command", [["review", "show"], ["tx", "show"]])
def test_show_masks_patrons_not_action_names(command: list[str], ledger_url: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Action and event names are vipflow's words, shown as they are; a patron's name in an answer is
    masked; amounts read 351.00 in the header and in the events."""
    out = _out(capsys, *command, LONG_ID)
    assert "freeze started" in out and "freeze done" in out and "review done" in out
    assert "Jane" not in out and '"name": "***"' in out
    assert "amount 351.00" in out and '"amount": "351.00"' in out and '"351"' not in out


def test_show_json_masks_patrons_not_action_names(ledger_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """In --json, every action and event keeps its name; the patron's name inside a result is masked."""
    view = json.loads(_out(capsys, "tx", "show", LONG_ID, "--json"))
    assert [a["name"] for a in view["record"]["actions"]] == ["freeze", "freeze", "review"]
    assert {e["name"] for e in view["events"] if e["kind"] == "action"} == {"freeze"}
    assert view["record"]["actions"][1]["result"]["name"] == "***"
    assert view["record"]["amount"] == "351.00" and view["record"]["facts"]["velocity"]["amount_24h"] == "61.90"


def test_tx_show_prints_the_facts_behind_the_decision(ledger_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json the facts the rules read are shown, money with two decimals, personal data masked,
    and the unknown ones named."""
    out = _out(capsys, "tx", "show", LONG_ID)
    assert "facts the rules decided on:" in out
    assert "amount=351.00" in out and "available_amount=4500.00" in out and "amount_24h=61.90" in out
    assert "count_24h=3" in out and 'bank_name="Bank XYZ"' in out
    assert "7210695258" not in out and "P0001234" not in out and "vip_card_number=******5258" in out
    assert "unknown:" in out and "wallet.*" in out
