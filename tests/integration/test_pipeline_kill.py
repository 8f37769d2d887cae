"""A worker killed with SIGKILL mid-approval: the task is redelivered and approved exactly once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from producers.sim.patrons import PREFERRED_GOOD
from producers.sim.sender import build_notification
from tests.integration.harness import running_stack

pytestmark = pytest.mark.integration


@pytest.mark.timeout(240)
def test_worker_killed_mid_approval_approves_exactly_once(redis_url: str) -> None:
    """SIGKILL while VIP holds the approval open; a new worker reconciles and approves once."""
    with running_stack(redis_url) as stack:
        assert stack.sim is not None
        stack.sim.faults({"hang_ms": 8000, "scripted": [
            {"transaction_id": "itkill0001", "endpoint": "approve", "responses": ["commit_then_timeout"]}]})
        answer = stack.notify("withdraw", build_notification(
            PREFERRED_GOOD, "withdraw", Decimal("60.00"), transaction_id="itkill0001", bank_index=1))
        assert answer.status_code == 200
        stack.wait_state("itkill0001", ("approving",), timeout_s=30)
        stack.kill_worker()
        stack.start_worker()
        # The broker gives the unacknowledged task back after the visibility timeout (60 s here).
        rec = stack.wait_state("itkill0001", ("approved", "review", "rejected"), timeout_s=150)
        assert rec["state"] == "approved"
        assert stack.sim.stats()["approvals"].get("itkill0001") == 1
        assert rec["deliveries"] >= 2
        # The ledger kept both deliveries' steps: the start before the kill, the reconciling start after.
        starts = [e.data for e in stack.events("itkill0001") if (e.name, e.status) == ("approve", "started")]
        assert len(starts) == 2 and starts[0] == {"outcome_unknown": False} and starts[1] == {"outcome_unknown": True}
