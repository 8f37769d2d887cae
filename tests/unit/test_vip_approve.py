"""approve_with_reconciliation on FakeVip: retries, reconciliation, rejection, giving up."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from worker.vip.approve import approve_with_reconciliation, backoff_delay
from worker.vip.fake import FakeVip, vip_error_body

BODY = {
    "transactionId": "txnapprove0001",
    "amount": Decimal("89.76"),
    "vipCardNumber": "7210642759",
}


def _approve(vip: FakeVip, **kw: Any) -> Any:
    kw.setdefault("max_attempts", 5)
    sleeps: list[float] = []
    attempts: list[dict[str, Any]] = []
    outcome = approve_with_reconciliation(
        vip,
        "withdraw",
        BODY,
        backoff_base_s=0.5,
        backoff_max_s=4.0,
        sleep=sleeps.append,
        on_attempt=attempts.append,
        **kw,
    )
    return outcome, sleeps, attempts


def test_two_500s_then_success_approves_once() -> None:
    """Two 5xx answers are retried and the transaction ends approved exactly once."""
    vip = FakeVip()
    vip.fail_next_approvals(500, 500)
    outcome, sleeps, _ = _approve(vip)
    assert (outcome.status, outcome.attempts) == ("approved", 3)
    assert vip.approvals[BODY["transactionId"]] == 1
    assert len(sleeps) == 2


def test_timeout_after_commit_is_reconciled_without_second_approval() -> None:
    """A timeout after VIP committed is found by the lookup, so approve is not called again."""
    vip = FakeVip()
    vip.fail_next_approvals("commit_then_timeout")
    outcome, _, attempts = _approve(vip)
    assert outcome.status == "already_approved"
    assert vip.approvals[BODY["transactionId"]] == 1
    assert [a["action"] for a in attempts] == ["approve", "lookup"]


def test_outcome_unknown_asks_lookup_first() -> None:
    """With outcome_unknown, an approval VIP already completed is not called again."""
    vip = FakeVip()
    vip.approve("withdraw", BODY)
    outcome, _, _ = _approve(vip, outcome_unknown=True)
    assert outcome.status == "already_approved"
    assert vip.calls["approve"] == 1


def test_outcome_unknown_with_nothing_at_vip_approves() -> None:
    """With outcome_unknown and a lookup that knows nothing, the approval is made once."""
    vip = FakeVip()
    outcome, _, attempts = _approve(vip, outcome_unknown=True)
    assert outcome.status == "approved"
    assert [a["action"] for a in attempts] == ["lookup", "approve"]


def test_4xx_is_rejected_with_vip_error_body_and_not_retried() -> None:
    """A 4xx ends the approval at once, keeping VIP's error body."""
    vip = FakeVip()
    vip.fail_next_approvals((400, vip_error_body(13, "Closed account")))
    outcome, _, _ = _approve(vip)
    assert outcome.status == "rejected" and outcome.attempts == 1
    assert outcome.error is not None
    assert outcome.error["body"]["errorCode"] == 13
    assert outcome.error["body"]["operatorErrorMessage"] == "Closed account"
    assert vip.calls["approve"] == 1


def test_gives_up_after_max_attempts_with_last_error() -> None:
    """Persistent 5xx ends in gave_up after max_attempts approve calls, with the last error."""
    vip = FakeVip()
    vip.fail_next_approvals(*[503] * 10)
    outcome, sleeps, _ = _approve(vip, max_attempts=4)
    assert (outcome.status, outcome.attempts) == ("gave_up", 4)
    assert outcome.error is not None and outcome.error["status"] == 503
    assert vip.calls["approve"] == 4 and vip.approvals[BODY["transactionId"]] == 0
    assert len(sleeps) == 3


def test_failing_lookup_never_leads_to_a_blind_approval() -> None:
    """When the reconciling lookup fails, no approval is attempted in that round."""
    vip = FakeVip()
    vip.fail_next_approvals("commit_then_timeout")
    vip.fail_next_lookups("timeout", "timeout", "timeout", "timeout", "timeout")
    outcome, _, _ = _approve(vip, max_attempts=3)
    assert outcome.status == "gave_up"
    assert vip.calls["approve"] == 1 and vip.approvals[BODY["transactionId"]] == 1


def test_lookup_failed_status_allows_a_retry() -> None:
    """A FAILED transaction status from the lookup is not an approval, so the retry goes ahead."""
    vip = FakeVip()
    vip.fail_next_approvals((400, vip_error_body()))
    approve_with_reconciliation(
        vip,
        "withdraw",
        BODY,
        max_attempts=1,
        backoff_base_s=0,
        backoff_max_s=0,
        sleep=lambda s: None,
    )
    outcome, _, _ = _approve(vip, outcome_unknown=True)
    assert outcome.status == "approved" and vip.approvals[BODY["transactionId"]] == 1


def test_attempt_records_are_json_ready() -> None:
    """Every on_attempt record serialises to JSON without loss (Decimals as strings)."""
    vip = FakeVip()
    vip.fail_next_approvals(500)
    _, _, attempts = _approve(vip)
    text = json.dumps(attempts)
    assert '"89.76"' in text and [a["action"] for a in attempts] == ["approve", "lookup", "approve"]


def test_backoff_is_capped_full_jitter() -> None:
    """The delay is uniform up to base * 2**(n-1), never above the cap."""
    assert backoff_delay(1, 0.5, 4.0, rand=lambda: 1.0) == 0.5
    assert backoff_delay(3, 0.5, 4.0, rand=lambda: 1.0) == 2.0
    assert backoff_delay(10, 0.5, 4.0, rand=lambda: 1.0) == 4.0
    assert backoff_delay(10, 0.5, 4.0, rand=lambda: 0.0) == 0.0
