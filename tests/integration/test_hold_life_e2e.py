"""A withdrawal's hold through to its end with the real processes (issue 12): the ingestor, a Celery
worker and the simulator's VIP Connect and wallet over HTTP. The wallet simulator counts every
movement of money per key; each must happen once."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from producers.sim.patrons import PREFERRED_GOOD
from producers.sim.sender import build_notification
from tests.conftest import TEST_REDIS_URL
from tests.integration.harness import Stack, running_stack
from worker.vip.fake import vip_error_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One stack for the module (its ledger the stack's own SQLite file)."""
    with running_stack(TEST_REDIS_URL) as s:
        yield s


def wallet_stats(stack: Stack) -> dict[str, Any]:
    assert stack.sim is not None
    stats: dict[str, Any] = requests.get(f"{stack.sim.wallet_url}/sim/stats", timeout=5).json()
    return stats


def moved(stack: Stack, txid: str) -> dict[str, int]:
    """How often each kind of movement happened for ``txid`` at the wallet simulator."""
    stats = wallet_stats(stack)
    return {kind: int(stats[kind].get(txid, 0)) for kind in ("holds", "captures", "releases", "reversals")}


def send(stack: Stack, kind: str, body: dict[str, Any]) -> None:
    answer = stack.notify(kind, body)
    assert answer.status_code == 200, answer.text


def withdrawal(txid: str, amount: str) -> dict[str, Any]:
    return build_notification(PREFERRED_GOOD, "withdraw", Decimal(amount), transaction_id=txid, bank_index=1)


def test_approved_withdrawal_is_held_approved_and_captured_once(stack: Stack) -> None:
    """Frozen, approved at VIP once, captured once, even though VIP Connect sends it three times."""
    body = withdrawal("ithold0001", "120.00")
    for _ in range(3):
        send(stack, "withdraw", body)
    rec = stack.wait_state("ithold0001", ("approved", "review", "rejected"))
    assert rec["state"] == "approved", rec.get("review_reason")
    assert stack.sim is not None and stack.sim.stats()["approvals"].get("ithold0001") == 1
    assert moved(stack, "ithold0001") == {"holds": 1, "captures": 1, "releases": 0, "reversals": 0}
    steps = [(e.kind, e.name, e.status, e.state) for e in stack.events("ithold0001")]
    assert steps[-3:] == [("action", "approve", "done", "capturing"), ("action", "capture", "started", "capturing"),
                          ("action", "capture", "done", "approved")]


def test_error_after_capture_reverses_it(stack: Stack) -> None:
    """VIP Connect's error notification for a withdrawal already captured reverses the capture once."""
    send(stack, "withdraw", withdrawal("ithold0002", "80.00"))
    stack.wait_state("ithold0002", ("approved",))
    error = {"transactionId": "ithold0002", **vip_error_body(13, "Closed account")}
    send(stack, "error", error)
    send(stack, "error", error)
    rec = stack.wait_state("ithold0002", ("failed",))
    assert [a["name"] for a in rec["actions"] if a["status"] == "done"][-2:] == ["reverse", "fail"]
    assert moved(stack, "ithold0002") == {"holds": 1, "captures": 1, "releases": 0, "reversals": 1}


def test_error_while_held_in_review_releases_it(stack: Stack) -> None:
    """A withdrawal frozen and waiting in review, then failed by VIP Connect: released once, never
    captured."""
    send(stack, "withdraw", withdrawal("ithold0003", "3000.00"))
    stack.wait_state("ithold0003", ("review",))
    send(stack, "error", {"transactionId": "ithold0003", **vip_error_body(2, "FCRA decline")})
    stack.wait_state("ithold0003", ("failed",))
    assert moved(stack, "ithold0003") == {"holds": 1, "captures": 0, "releases": 1, "reversals": 0}
