"""`vipflow review` and `vipflow tx show` as a reviewer runs them, against the real ingestor, a real Celery
worker, the simulator and the ledger (an SQLite file per module)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from producers.sim.patrons import PREFERRED_GOOD
from producers.sim.sender import build_notification
from tests.integration.harness import ROOT, Stack, running_stack
from worker.config import Settings
from worker.ledger.actor import cli_actor

pytestmark = pytest.mark.integration
ACTOR = cli_actor(Settings())  # who the CLI records: the OS user running these tests (or ledger.actor)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    from tests.conftest import TEST_REDIS_URL

    with running_stack(TEST_REDIS_URL) as s:
        yield s


def command(stack: Stack, *args: str, group: str = "review") -> list[str]:
    return [sys.executable, "-m", "producers", group, *args]


def vipflow(stack: Stack, *args: str, group: str = "review") -> subprocess.CompletedProcess[str]:
    """Run the real `vipflow review ...` (or another ``group``) with the stack's configuration."""
    return subprocess.run(command(stack, *args, group=group), cwd=ROOT, env=stack.env, capture_output=True,
                          text=True, timeout=60, check=False)


def in_review(stack: Stack, txid: str) -> dict[str, Any]:
    """A 3,000 withdrawal: the shipped rules freeze it and send it to review."""
    body = build_notification(PREFERRED_GOOD, "withdraw", Decimal("3000.00"), transaction_id=txid, bank_index=1)
    assert stack.notify("withdraw", body).status_code == 200
    rec = stack.wait_state(txid, ("approved", "review", "rejected"))
    assert rec["state"] == "review", rec
    return rec


def approvals(stack: Stack, txid: str) -> int:
    assert stack.sim is not None
    return int(stack.sim.stats().get("approvals", {}).get(txid, 0))


def wallet(stack: Stack) -> dict[str, Any]:
    assert stack.sim is not None
    return dict(requests.get(f"{stack.sim.wallet_url}/sim/stats", timeout=5).json())


def test_list_shows_the_queued_transaction(stack: Stack) -> None:
    """`review list --json` shows a queued withdrawal with its type, amount and matched rule."""
    in_review(stack, "rvwd000001")
    result = vipflow(stack, "list", "--json")
    assert result.returncode == 0, result.stderr
    items = {i["transaction_id"]: i for i in map(json.loads, result.stdout.splitlines())}
    item = items["rvwd000001"]
    assert (item["type"], item["amount"], item["overdue"]) == ("withdraw", "3000.00", False)
    assert "large-withdrawal" in item["matched"]
    # Release the hold: the patron's wallet has room for only a few 3,000 holds across this module.
    assert vipflow(stack, "reject", "rvwd000001", "--reason", "test done").returncode == 0


def test_two_approvals_at_once_approve_once(stack: Stack) -> None:
    """A double click (two `review approve` at the same time) gives one approval at the simulator."""
    in_review(stack, "rvwd000002")
    procs = [subprocess.Popen(command(stack, "approve", "rvwd000002", "--reviewer", "alice"), cwd=ROOT,
                              env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    assert any("rvwd000002 is not waiting for review (it is approved)" in err for _, err in outs)
    assert approvals(stack, "rvwd000002") == 1
    again = vipflow(stack, "approve", "rvwd000002")
    assert again.returncode == 2 and approvals(stack, "rvwd000002") == 1
    rec = stack.record("rvwd000002")
    assert rec is not None and rec["state"] == "approved"
    done = [e for e in stack.events("rvwd000002") if e.kind == "human" and e.status == "done"]
    assert [(e.name, e.actor, e.state) for e in done] == [("review_approve", ACTOR, "approved")]
    assert done[0].data is not None and done[0].data["stated_name"] == "alice"


def test_tx_show_reads_the_reviewers_approval_from_the_ledger(stack: Stack) -> None:
    """`vipflow tx show --json --rules` of a reviewed withdrawal: the human events with the actor, the
    rule text by hash, and the card number masked."""
    in_review(stack, "rvwd000006")
    assert vipflow(stack, "approve", "rvwd000006", "--reason", "called the patron").returncode == 0
    result = vipflow(stack, "show", "rvwd000006", "--json", "--rules", group="tx")
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert [(e["name"], e["status"], e["actor"]) for e in view["events"] if e["kind"] == "human"] == [
        ("review_approve", "started", ACTOR), ("review_approve", "done", ACTOR)]
    assert view["rules"]["content_hash"] == view["record"]["decision"]["content_hash"]
    assert "large-withdrawal" in view["rules"]["text"]
    assert PREFERRED_GOOD.vip_card_number not in result.stdout


def test_reject_releases_the_freeze(stack: Stack) -> None:
    """`review reject` releases the withdrawal's hold in the wallet and approves nothing."""
    in_review(stack, "rvwd000003")
    assert wallet(stack)["held"]["rvwd000003"]["status"] == "held"
    result = vipflow(stack, "reject", "rvwd000003", "--reviewer", "bob", "--reason", "patron cancelled")
    assert result.returncode == 0, result.stderr
    assert f"rejected by {ACTOR} (bob)" in result.stdout
    assert wallet(stack)["held"]["rvwd000003"]["status"] == "released"
    assert approvals(stack, "rvwd000003") == 0
    rec = stack.record("rvwd000003")
    assert rec is not None and rec["state"] == "rejected"
    events = stack.events("rvwd000003")
    assert ("release", "done") in [(e.name, e.status) for e in events]
    assert [(e.name, e.status, e.actor) for e in events if e.kind == "human"][-1] == ("review_reject", "done", ACTOR)


def test_reject_without_reason_is_a_usage_error(stack: Stack) -> None:
    """`review reject` without --reason exits 2 (argparse) and leaves the item queued."""
    in_review(stack, "rvwd000004")
    result = vipflow(stack, "reject", "rvwd000004", "--reviewer", "bob")
    assert result.returncode == 2 and "--reason" in result.stderr
    assert vipflow(stack, "show", "rvwd000004").returncode == 0
    assert vipflow(stack, "reject", "rvwd000004", "--reason", "test done").returncode == 0


def test_vip_refusal_keeps_it_in_review_and_exits_1(stack: Stack) -> None:
    """VIP refusing the approval: exit 1, the transaction stays queued with the error on its record."""
    in_review(stack, "rvwd000005")
    assert stack.sim is not None
    stack.sim.faults({"transaction_id": "rvwd000005", "endpoint": "approve", "responses": [400]})
    result = vipflow(stack, "approve", "rvwd000005")
    assert result.returncode == 1 and "stays in review" in result.stderr
    rec = stack.record("rvwd000005")
    assert rec is not None and rec["state"] == "review"
    assert vipflow(stack, "show", "rvwd000005").returncode == 0
    assert approvals(stack, "rvwd000005") == 0


def test_not_in_queue_exits_2(stack: Stack) -> None:
    """Approving a transaction that is not queued exits 2 with a clear message."""
    result = vipflow(stack, "approve", "rvnosuch01")
    assert result.returncode == 2
    assert "rvnosuch01 is not waiting for review" in result.stderr
