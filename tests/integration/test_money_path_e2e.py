"""The money path with the real parts (issue 12): the ingestor, a Celery worker, the simulator's VIP
Connect and wallet over HTTP. A confirmed deposit credited once, velocity tallies by kind as a real
worker sees them, and expiry run against the real VIP client and HTTP wallet with the clock moved."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from producers.sim.patrons import crowd_patron
from producers.sim.sender import build_notification
from tests.conftest import TEST_REDIS_URL
from tests.integration.harness import Stack, running_stack
from worker.config import WalletSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """A stack whose worker credits confirmed deposits (wallet.credit_deposits on)."""
    with running_stack(TEST_REDIS_URL, VIPFLOW_WALLET__CREDIT_DEPOSITS="true") as s:
        yield s


def wallet_stats(stack: Stack) -> dict[str, Any]:
    assert stack.sim is not None
    stats: dict[str, Any] = requests.get(f"{stack.sim.wallet_url}/sim/stats", timeout=5).json()
    return stats


def send(stack: Stack, kind: str, body: dict[str, Any]) -> None:
    answer = stack.notify(kind, body)
    assert answer.status_code == 200, answer.text


def test_a_confirmed_deposit_is_credited_once(stack: Stack) -> None:
    """Approved at VIP once and credited to the wallet once, though VIP Connect sent it three times."""
    body = build_notification(crowd_patron(101), "deposit", Decimal("75.25"), transaction_id="itcred0001")
    for _ in range(3):
        send(stack, "deposit", body)
    rec = stack.wait_state("itcred0001", ("approved", "review", "rejected"))
    assert rec["state"] == "approved", rec.get("review_reason")
    assert stack.sim is not None and stack.sim.stats()["approvals"].get("itcred0001") == 1
    assert wallet_stats(stack)["credits"] == {"itcred0001": 1}
    steps = [(e.name, e.status, e.state) for e in stack.events("itcred0001") if e.kind == "action"]
    assert steps[-3:] == [("approve", "done", "crediting"), ("credit", "started", "crediting"),
                          ("credit", "done", "approved")]


def test_velocity_tallies_count_what_became_of_each_withdrawal(stack: Stack) -> None:
    """One withdrawal approved, one held in review: the third sees two attempts, one approved, one
    pending, and committed as their sum."""
    patron = crowd_patron(202)
    send(stack, "withdraw", build_notification(patron, "withdraw", Decimal("100.00"), transaction_id="itvel0001"))
    assert stack.wait_state("itvel0001", ("approved", "review", "rejected"))["state"] == "approved"
    send(stack, "withdraw", build_notification(patron, "withdraw", Decimal("3000.00"), transaction_id="itvel0002"))
    assert stack.wait_state("itvel0002", ("approved", "review", "rejected"))["state"] == "review"
    send(stack, "withdraw", build_notification(patron, "withdraw", Decimal("20.00"), transaction_id="itvel0003"))
    rec = stack.wait_state("itvel0003", ("approved", "review", "rejected"))
    velocity = rec["facts"]["velocity"]
    assert velocity["attempts"]["count_24h"] == 2
    assert (velocity["approved"]["count_24h"], velocity["approved"]["amount_24h"]) == (1, "100.00")
    assert (velocity["pending"]["count_24h"], velocity["pending"]["amount_24h"]) == (1, "3000.00")
    assert velocity["committed"]["amount_24h"] == "3100.00"


def test_a_hold_left_in_review_expires_against_the_real_wallet(stack: Stack,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A withdrawal frozen and waiting in review: one expiry round with the real VIP client and HTTP wallet
    (the clock moved past wallet.hold_max_age_s, not slept) releases its hold at the wallet once and
    ends it expired; an earlier round leaves it."""
    from worker.bootstrap import bootstrap
    from worker.config import load_settings
    from worker.expiry import expire_once

    body = build_notification(crowd_patron(303), "withdraw", Decimal("2600.00"), transaction_id="itexp0001")
    send(stack, "withdraw", body)
    rec = stack.wait_state("itexp0001", ("review",))
    for name, value in stack.env.items():
        if name.startswith("VIPFLOW_"):
            monkeypatch.setenv(name, value)
    deps = bootstrap(load_settings(None), ledger=stack.ledger)
    max_age = WalletSettings().hold_max_age_s
    assert "itexp0001" not in expire_once(deps, now=rec["created_at"] + max_age - 60).expired
    assert "itexp0001" in expire_once(deps, now=rec["created_at"] + max_age + 1).expired
    stored = stack.ledger.load("itexp0001")
    assert stored is not None and stored.record.state == "expired"
    stats = wallet_stats(stack)
    assert stats["holds"].get("itexp0001") == 1 and stats["releases"].get("itexp0001") == 1
    assert stats["captures"].get("itexp0001") is None
