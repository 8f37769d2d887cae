"""End to end: the real ingestor, a real Celery worker process and the simulator over HTTP.

One stack per module (starting processes is the slow part); each test uses its
own transaction ids and checks the simulator's own approval counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from producers.sim.patrons import ONLINE, PREFERRED_BAD, PREFERRED_GOOD, UNKNOWN_CARD
from producers.sim.sender import build_notification
from tests.integration.harness import Stack, running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One stack for the module, its ledger on PostgreSQL (a database of its own) when one answers
    (always under CI), else on SQLite."""
    import redis

    from tests.conftest import TEST_REDIS_URL, stack_database

    redis.Redis.from_url(TEST_REDIS_URL).ping()
    database_url = stack_database("_e2e")  # else the stack's own SQLite file
    with running_stack(TEST_REDIS_URL, database_url) as s:
        yield s


def approvals(stack: Stack, txid: str) -> int:
    assert stack.sim is not None
    return int(stack.sim.stats().get("approvals", {}).get(txid, 0))


def send(stack: Stack, kind: str, body: dict[str, Any]) -> None:
    answer = stack.notify(kind, body)
    assert answer.status_code == 200, answer.text


def test_deposit_is_approved_once(stack: Stack) -> None:
    """A standard deposit is approved exactly once at the simulator."""
    send(stack, "deposit", build_notification(PREFERRED_GOOD, "deposit", Decimal("50.00"),
                                              transaction_id="itdep00001"))
    rec = stack.wait_state("itdep00001", ("approved", "review", "rejected"))
    assert rec["state"] == "approved"
    assert approvals(stack, "itdep00001") == 1


def test_withdrawal_is_frozen_and_approved_once(stack: Stack) -> None:
    """A standard withdrawal is frozen in the wallet once and approved once."""
    send(stack, "withdraw", build_notification(PREFERRED_GOOD, "withdraw", Decimal("100.00"),
                                               transaction_id="itwd000001", bank_index=1))
    rec = stack.wait_state("itwd000001", ("approved", "review", "rejected"))
    assert rec["state"] == "approved", rec.get("review_reason")
    assert [a["name"] for a in rec["actions"] if a["status"] == "done"][:1] == ["freeze"]
    assert approvals(stack, "itwd000001") == 1
    steps = [(e.kind, e.name, e.status) for e in stack.events("itwd000001")]
    assert steps[:3] == [("received", None, None), ("delivered", None, None), ("decided", "approve", None)]
    assert steps[3:5] == [("action", "freeze", "started"), ("action", "freeze", "done")]
    assert steps[-3:] == [("action", "approve", "done"), ("action", "capture", "started"),
                          ("action", "capture", "done")]
    [note] = stack.ledger.notifications_of("itwd000001")
    assert note.status == "valid" and note.route == "/vip/notify/withdraw"


def test_large_withdrawal_is_frozen_and_reviewed(stack: Stack) -> None:
    """A withdrawal above 2,500 is frozen and sent to review with no approval call."""
    send(stack, "withdraw", build_notification(PREFERRED_GOOD, "withdraw", Decimal("3000.00"),
                                               transaction_id="itwd000002", bank_index=1))
    rec = stack.wait_state("itwd000002", ("approved", "review", "rejected"))
    assert rec["state"] == "review"
    assert any(a["name"] == "freeze" and a["status"] == "done" for a in rec["actions"])
    assert approvals(stack, "itwd000002") == 0


def test_patron_not_in_good_standing_is_rejected(stack: Stack) -> None:
    """A patron VIP says is not in good standing is rejected with no approval call."""
    send(stack, "deposit", build_notification(PREFERRED_BAD, "deposit", Decimal("20.00"),
                                              transaction_id="itdep00002"))
    assert stack.wait_state("itdep00002", ("approved", "review", "rejected"))["state"] == "rejected"
    assert approvals(stack, "itdep00002") == 0


def test_instant_payment_to_ineligible_bank_is_rejected(stack: Stack) -> None:
    """An INP withdrawal to a bank VIP lists as not instant-eligible is rejected."""
    send(stack, "withdraw", build_notification(ONLINE, "withdraw", Decimal("50.00"), bank_index=1,
                                               fund_transfer_type="INP", transaction_id="itwd000003"))
    rec = stack.wait_state("itwd000003", ("approved", "review", "rejected"))
    assert rec["state"] == "rejected"
    assert "instant-payment-to-ineligible-bank" in [m["id"] for m in rec["decision"]["matched"]]
    assert approvals(stack, "itwd000003") == 0


def test_unknown_vip_card_is_handled_by_the_rules(stack: Stack) -> None:
    """A card VIP does not know gives account.found false and the rules send it to review."""
    body = build_notification(PREFERRED_GOOD, "deposit", Decimal("20.00"), transaction_id="itdep00003")
    body["VipCardNumber"] = UNKNOWN_CARD
    send(stack, "deposit", body)
    rec = stack.wait_state("itdep00003", ("approved", "review", "rejected"))
    assert rec["state"] == "review" and rec["facts"]["account"]["found"] is False
    assert "account-not-found" in [m["id"] for m in rec["decision"]["matched"]]


def test_duplicate_notification_gives_one_approval(stack: Stack) -> None:
    """The same notification sent three times is approved once."""
    body = build_notification(PREFERRED_GOOD, "deposit", Decimal("30.00"), transaction_id="itdep00004")
    for _ in range(3):
        send(stack, "deposit", body)
    stack.wait_state("itdep00004", ("approved",))
    assert approvals(stack, "itdep00004") == 1
    kinds = [e.kind for e in stack.events("itdep00004")]
    assert kinds.count("received") == 1 and kinds.count("decided") == 1


def test_vip_500_twice_then_success_gives_one_approval(stack: Stack) -> None:
    """Two 500s from VIP then success end in exactly one approval."""
    assert stack.sim is not None
    stack.sim.faults({"scripted": [{"transaction_id": "itdep00005", "endpoint": "approve",
                                    "responses": [500, 500]}]})
    send(stack, "deposit", build_notification(PREFERRED_GOOD, "deposit", Decimal("40.00"),
                                              transaction_id="itdep00005"))
    rec = stack.wait_state("itdep00005", ("approved", "review", "rejected"))
    assert rec["state"] == "approved"
    assert approvals(stack, "itdep00005") == 1


def test_vip_4xx_is_escalated_with_its_error_body(stack: Stack) -> None:
    """A 4xx from VIP is not retried: review, VIP's error body kept on the record."""
    assert stack.sim is not None
    stack.sim.faults({"scripted": [{"transaction_id": "itdep00006", "endpoint": "approve",
                                    "responses": [{"status": 400, "body": {"errorCode": 13,
                                                                           "operatorErrorMessage": "closed"}}]}]})
    send(stack, "deposit", build_notification(PREFERRED_GOOD, "deposit", Decimal("45.00"),
                                              transaction_id="itdep00006"))
    rec = stack.wait_state("itdep00006", ("approved", "review", "rejected"))
    assert rec["state"] == "review"
    approve = [a for a in rec["actions"] if a["name"] == "approve"][-1]
    assert approve["result"]["error"]["body"]["errorCode"] == 13
    assert approvals(stack, "itdep00006") == 0
