"""`vipflow replay` as an operator runs it, against the real ingestor, a real Celery worker and the simulator.

One stack for the module; each test uses its own transaction ids and reads the
simulator's own approval and hold counts. Deposits and withdrawals use
different patrons where velocity would otherwise make the hand-computed
expectations depend on test order.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from producers.sim.patrons import ONLINE, PREFERRED_GOOD
from producers.sim.sender import build_notification
from tests.integration.harness import ROOT, Stack, running_stack, wait_until
from worker.ledger import RecordWriter, State, TransactionRecord
from worker.ledger.record import NotificationSeen
from worker.store.archive import Archive
from worker.store.locks import Locks

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    from tests.conftest import TEST_REDIS_URL

    with running_stack(TEST_REDIS_URL) as s:
        yield s


def vipflow(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real `vipflow` command with the stack's configuration (and ``env`` on top)."""
    return subprocess.run([sys.executable, "-m", "producers", *args], cwd=ROOT, env={**stack.env, **env},
                          capture_output=True, text=True, timeout=60, check=False)


def approvals(stack: Stack) -> dict[str, int]:
    assert stack.sim is not None
    return dict(stack.sim.stats().get("approvals", {}))


def holds(stack: Stack) -> dict[str, int]:
    assert stack.sim is not None
    return dict(requests.get(f"{stack.sim.wallet_url}/sim/stats", timeout=5).json()["holds"])


def settle(stack: Stack, kind: str, body: dict[str, Any], txid: str) -> dict[str, Any]:
    answer = stack.notify(kind, body)
    assert answer.status_code == 200, answer.text
    return stack.wait_state(txid, ("approved", "review", "rejected"))


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def wait_deliveries(stack: Stack, txid: str, at_least: int) -> dict[str, Any]:
    return wait_until(lambda: (r := stack.record(txid)) and r["deliveries"] >= at_least and r, 30,
                      f"{txid} delivered {at_least} times")


def test_replay_by_time_and_by_id_changes_nothing_for_completed(stack: Stack) -> None:
    """Replaying settled transactions by time range and by id redelivers them and approves nothing more."""
    start = time.time() - 1
    settle(stack, "deposit", build_notification(PREFERRED_GOOD, "deposit", Decimal("40.00"),
                                                transaction_id="rpdep00001"), "rpdep00001")
    settle(stack, "withdraw", build_notification(ONLINE, "withdraw", Decimal("60.00"),
                                                 transaction_id="rpwd000001"), "rpwd000001")
    before_approvals, before_holds = approvals(stack), holds(stack)
    assert before_approvals["rpdep00001"] == 1 and before_approvals["rpwd000001"] == 1

    by_time = vipflow(stack, "replay", "--since", iso(start), "--until", iso(time.time() + 1), "--json")
    assert by_time.returncode == 0, by_time.stderr
    assert json.loads(by_time.stdout)["queued"] >= 2
    wait_deliveries(stack, "rpdep00001", 2)
    wait_deliveries(stack, "rpwd000001", 2)

    by_id = vipflow(stack, "replay", "--id", "rpdep00001", "--id", "rpwd000001")
    assert by_id.returncode == 0, by_id.stderr
    assert "queued 2 (2 of them already settled" in by_id.stdout
    rec = wait_deliveries(stack, "rpwd000001", 3)
    wait_deliveries(stack, "rpdep00001", 3)

    assert rec["state"] == "approved"
    assert approvals(stack) == before_approvals
    assert holds(stack) == before_holds


def test_unknown_id_exits_2_naming_it(stack: Stack) -> None:
    """An id with no notification in the ledger or the intake buffer is refused with exit 2 and its name."""
    result = vipflow(stack, "replay", "--id", "rpnosuch001")
    assert result.returncode == 2
    assert "--id: no notification recorded for transaction rpnosuch001" in result.stderr


def test_unprocessed_recovers_a_notification_archived_but_never_queued(stack: Stack) -> None:
    """A body archived (pending) whose task was never queued is decided and approved once after --unprocessed."""
    body = build_notification(PREFERRED_GOOD, "deposit", Decimal("25.00"), transaction_id="rpdep00002")
    archive = Archive(stack.redis, stack.prefix)
    entry = archive.append("deposit", json.dumps(body).encode(), status="valid", transaction_id="rpdep00002",
                           error=None)
    assert stack.record("rpdep00002") is None  # nothing queued it
    result = vipflow(stack, "replay", "--unprocessed")
    assert result.returncode == 0, result.stderr
    rec = stack.wait_state("rpdep00002", ("approved", "review", "rejected"))
    assert rec["state"] == "approved"
    assert approvals(stack)["rpdep00002"] == 1
    wait_until(lambda: entry not in archive.pending_ids() and entry not in
               {e.entry_id for e in stack.ledger.unprocessed()}, 10, "the entry to be finished")
    assert stack.ledger.notification(entry) is not None  # the ledger holds it now


def test_dry_run_after_a_rule_change_matches_the_hand_computed_differences(stack: Stack, tmp_path: Path) -> None:
    """large-withdrawal lowered from 2,500 to 500: only the 1,000 withdrawal moves, approve -> review."""
    for txid, amount in (("rpwd000010", "100.00"), ("rpwd000011", "1000.00"), ("rpwd000012", "3000.00")):
        settle(stack, "withdraw", build_notification(PREFERRED_GOOD, "withdraw", Decimal(amount),
                                                     transaction_id=txid, bank_index=1), txid)
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules" / "default", rules)
    text = (rules / "withdraw.yaml").read_text()
    assert "when: {amount: {gt: 2500}}" in text
    (rules / "withdraw.yaml").write_text(text.replace("when: {amount: {gt: 2500}}", "when: {amount: {gt: 500}}"))
    before = approvals(stack)
    ids = ["--id", "rpwd000010", "--id", "rpwd000011", "--id", "rpwd000012"]

    result = vipflow(stack, "replay", "--dry-run", "--rules", str(rules), "--json", *ids)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"transaction_id": "rpwd000011", "transaction_type": "withdraw", "change": "outcome", "recorded": "approve",
         "new": "review", "added": ["large-withdrawal"], "removed": [], "error": None},
        {"totals": {"transactions": 3, "decided_before": 3, "outcome_changes": 1, "rule_changes": 0,
                    "never_decided": 0, "errors": 0, "differences": 1, "before": {"approve": 2, "review": 1},
                    "after": {"approve": 1, "review": 2}, "unasked": {}, "interrupted": False}},
    ]
    table = vipflow(stack, "replay", "--dry-run", "--rules", str(rules), *ids)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if "rpwd000011" in line)
    assert "approve" in row and "review" in row and "+large-withdrawal" in row and "outcome" in row
    assert "1 of 3 transactions decided before would get another outcome" in table.stdout
    assert "rpwd000010" not in table.stdout
    assert approvals(stack) == before  # a dry run calls nothing
    assert stack.record("rpwd000011")["decision"]["outcome"] == "approve"  # type: ignore[index]


def failed_in_the_ledger(stack: Stack, txid: str, amount: str) -> str:
    """A deposit whose task failed unexpectedly after the rules decided approve, as the ledger keeps it:
    its notification finished and out of the intake buffer, the transaction in review. The entry id."""
    body = build_notification(PREFERRED_GOOD, "deposit", Decimal(amount), transaction_id=txid)
    archive = Archive(stack.redis, stack.prefix)
    entry_id = archive.append("deposit", json.dumps(body).encode(), status="valid", transaction_id=txid, error=None)
    entry = archive.get(entry_id)
    assert entry is not None
    lock = Locks(stack.redis, stack.prefix).lock(txid)
    lock.acquire(wait_s=5)
    rec = TransactionRecord(txid, transaction_type="deposit", amount=amount, deliveries=1,
                            notifications=(NotificationSeen(entry_id, "deposit", "valid", str(entry.received_at)),),
                            decision={"outcome": "approve", "ruleset": "deposit", "matched": []},
                            state=State.REVIEW, review_reason="unexpected RuntimeError while processing")
    RecordWriter(stack.ledger, lock, None, notification=entry)(rec)
    lock.finish(entry_id)
    stack.ledger.mark_done(entry_id)
    assert archive.get(entry_id) is None
    return entry_id


def test_force_redecides_a_failed_transaction_keeping_its_events_with_the_configured_actor(stack: Stack) -> None:
    """`replay --force --id` re-decides a transaction whose task failed: it is approved once, the events it had
    stay first in its log, and the replay event carries the configured ledger.actor."""
    failed_in_the_ledger(stack, "rpdep00020", "30.00")
    before = stack.events("rpdep00020")
    result = vipflow(stack, "replay", "--force", "--id", "rpdep00020", VIPFLOW_LEDGER__ACTOR="ops-team")
    assert result.returncode == 0, result.stderr
    assert "--force: 1 transaction will be decided again" in result.stdout
    assert stack.wait_state("rpdep00020", ("approved",))["state"] == "approved"
    assert approvals(stack)["rpdep00020"] == 1
    after = stack.events("rpdep00020")
    assert after[:len(before)] == before
    [replay] = [e for e in after if e.kind == "replay"]
    assert replay.actor == "config:ops-team" and replay.data is not None and replay.data["outcome"] == "approve"
    assert [e.kind for e in after].count("decided") == 2


def test_dlq_says_per_letter_what_it_did_and_keeps_letters_until_final(stack: Stack) -> None:
    """`replay --dlq` with the real worker: a letter of a final transaction is closed and left alone; a
    letter whose transaction never finished is re-queued, said so per letter, and closed once the worker
    has made it final; a second `--dlq` finds no open letter and queues nothing."""
    settle(stack, "deposit", build_notification(PREFERRED_GOOD, "deposit", Decimal("35.00"),
                                                transaction_id="rpdep00021"), "rpdep00021")
    [settled] = stack.ledger.notifications_of("rpdep00021")
    stack.ledger.add_dead_letter(settled.entry_id, "rpdep00021", "unexpected KeyError while processing",
                                 "unexpected_error", 1)
    body = build_notification(PREFERRED_GOOD, "deposit", Decimal("36.00"), transaction_id="rpdep00022")
    archive = Archive(stack.redis, stack.prefix)
    entry = archive.append("deposit", json.dumps(body).encode(), status="valid", transaction_id="rpdep00022",
                           error=None)  # buffered, never queued: its task gave up before it began
    stack.ledger.add_dead_letter(entry, "rpdep00022", "delivered 6 times without finishing", "max_deliveries", 6)
    result = vipflow(stack, "replay", "--dlq")
    assert result.returncode == 0, result.stderr
    assert f"transaction rpdep00022  entry {entry}: re-queued (it was not recorded yet)" in result.stdout
    assert "1 open dead letter: 1 requeued; 1 letter closed before (their transactions are final)" in result.stdout
    assert "rpdep00021" not in result.stdout  # approved already: its letter is closed, nothing to do
    assert stack.wait_state("rpdep00022", ("approved", "review", "rejected"))["state"] == "approved"
    wait_until(lambda: stack.ledger.dead_letters() == [], 10, "the re-queued letter to be closed")
    kept = {d.entry_id: d for d in stack.ledger.dead_letters(include_closed=True)}
    assert kept[entry].requeued_at is not None and kept[settled.entry_id].requeued_at is None
    assert approvals(stack)["rpdep00021"] == approvals(stack)["rpdep00022"] == 1
    again = vipflow(stack, "replay", "--dlq", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["totals"] == {
        "letters": 0, "closed_before": 2, "interrupted": False}
