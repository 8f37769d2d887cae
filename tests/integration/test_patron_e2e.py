"""Withdrawals as VIP Connect documents them, without PatronId, through the real processes (issue 12): the
ingestor, a Celery worker, the simulator's VIP Connect and wallet over HTTP, a PostgreSQL ledger (the
card is learned by the one-statement write). The wallet simulator counts holds, captures and card
lookups per key."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
import requests

from producers.sim.patrons import PREFERRED_GOOD, SimPatron, crowd_patron
from producers.sim.sender import build_notification
from producers.sim.wire import dumps
from tests.conftest import ROOT, TEST_REDIS_URL
from tests.integration.harness import Stack, running_stack
from worker.patron import UNKNOWN_PATRON
from worker.tokens import mint

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One stack for the module, its ledger on PostgreSQL (a database of its own) when one answers
    (always under CI), else on SQLite."""
    from tests.conftest import stack_database

    database_url = stack_database("_patron")  # else the stack's own SQLite file
    with running_stack(TEST_REDIS_URL, database_url) as s:
        yield s


def stats(stack: Stack) -> dict[str, Any]:
    assert stack.sim is not None
    found: dict[str, Any] = requests.get(f"{stack.sim.wallet_url}/sim/stats", timeout=5).json()
    return found


def send(stack: Stack, kind: str, body: dict[str, Any]) -> None:
    """POST ``body`` as the simulator's sender encodes it (numbers as JSON numbers keep their digits)."""
    token = mint(stack.key, "op-it", "vip-api", 600)
    answer = requests.post(f"{stack.ingest_url}/vip/notify/{kind}", data=dumps(body), timeout=10,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text


def documented(patron: SimPatron, txid: str, amount: str, *, pascal: bool, as_strings: bool) -> dict[str, Any]:
    body = build_notification(patron, "withdraw", Decimal(amount), transaction_id=txid, bank_index=1,
                              pascal=pascal, as_strings=as_strings)
    assert not any(key.lower() == "patronid" for key in body), body  # the simulator's default: VIP's shape
    return body


def tx_show(stack: Stack, txid: str) -> str:
    result = subprocess.run([sys.executable, "-m", "producers", "tx", "show", txid], cwd=ROOT, env=stack.env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(("txid", "pascal", "as_strings"), [("itpat00001", True, True), ("itpat00002", False, False)])
def test_a_documented_withdrawal_from_a_patron_seen_before_is_frozen_approved_once_and_captured(
        stack: Stack, txid: str, pascal: bool, as_strings: bool) -> None:
    """A deposit names card and patron; the withdrawal that names only the card (either key casing and
    number encoding, sent three times) is frozen for that patron found in the ledger, approved at VIP
    once and captured once; the wallet is never asked whose card it is; `vipflow tx show` says so."""
    patron = crowd_patron(7001 if pascal else 7002)
    send(stack, "deposit", build_notification(patron, "deposit", Decimal("50.00"), transaction_id=f"{txid}d"))
    assert stack.wait_state(f"{txid}d", ("approved", "review", "rejected"))["state"] == "approved"
    body = documented(patron, txid, "120.00", pascal=pascal, as_strings=as_strings)
    for _ in range(3):
        send(stack, "withdraw", body)
    rec = stack.wait_state(txid, ("approved", "review", "rejected"))
    assert rec["state"] == "approved", rec.get("review_reason")
    assert stack.sim is not None and stack.sim.stats()["approvals"].get(txid) == 1
    wallet = stats(stack)
    assert (wallet["holds"].get(txid), wallet["captures"].get(txid), wallet["releases"].get(txid)) == (1, 1, None)
    assert wallet["held"][txid]["patron_id"] == patron.patron_id
    assert wallet["card_lookups"].get(patron.vip_card_number) is None
    shown = tx_show(stack, txid)
    assert "patron: found by ledger" in shown and '"patron_source":"ledger"' in shown.replace(" ", "")
    assert "capture" in shown and "APPROVED" in shown


def test_a_documented_withdrawal_from_an_unknown_card_is_reviewed_with_the_reason(stack: Stack) -> None:
    """A card no notification named with its patron and the wallet does not know: review saying the patron
    is unknown; nothing held, nothing approved at VIP."""
    stranger = replace(PREFERRED_GOOD, vip_card_number="7210677777")
    send(stack, "withdraw", documented(stranger, "itpat00003", "60.00", pascal=True, as_strings=False))
    rec = stack.wait_state("itpat00003", ("approved", "review", "rejected"))
    assert rec["state"] == "review" and UNKNOWN_PATRON in rec["review_reason"], rec.get("review_reason")
    assert stack.sim is not None and stack.sim.stats()["approvals"].get("itpat00003") is None
    wallet = stats(stack)
    assert wallet["holds"].get("itpat00003") is None and wallet["card_lookups"].get("7210677777") == 1
    assert "the patron is unknown" in tx_show(stack, "itpat00003")


def test_a_card_never_seen_is_found_by_the_wallet(stack: Stack) -> None:
    """A patron with no earlier notification: the wallet names the card's patron (asked once), and the
    withdrawal is frozen, approved and captured."""
    patron = crowd_patron(7003)
    send(stack, "withdraw", documented(patron, "itpat00004", "75.00", pascal=False, as_strings=True))
    rec = stack.wait_state("itpat00004", ("approved", "review", "rejected"))
    assert rec["state"] == "approved", rec.get("review_reason")
    wallet = stats(stack)
    assert wallet["card_lookups"].get(patron.vip_card_number) == 1 and wallet["captures"].get("itpat00004") == 1
    assert "patron: found by wallet" in tx_show(stack, "itpat00004")
