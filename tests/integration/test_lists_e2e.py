"""A list change reaches a running worker without a restart: the real ingestor, a Celery worker process, the
simulator over HTTP, Redis and the ledger (PostgreSQL when one answers), and `vipflow lists` as a process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from producers.sim.patrons import crowd_patron
from producers.sim.sender import build_notification
from tests.conftest import ROOT, TEST_REDIS_URL
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration

RELOAD_S = 1.0  # lists.reload_interval_s for this stack
BLOCKED = """
  - id: blocked-card
    description: The VIP card is on the blocked list
    when: {vip_card_number: {in_list: blocked-cards}}
    outcome: reject
"""
PATRON = crowd_patron(4242)


def _vipflow(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "producers", *args], cwd=ROOT, env=stack.env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The shipped rules plus a blocked-card rule on deposits; the list exists (empty) before the worker starts."""
    from tests.conftest import stack_database

    rules = tmp_path_factory.mktemp("lists") / "rules"
    shutil.copytree(ROOT / "rules" / "default", rules)
    with (rules / "deposit.yaml").open("a", encoding="utf-8") as f:
        f.write(BLOCKED)
    s = Stack(TEST_REDIS_URL, stack_database("_lists"), VIPFLOW_RULES__PATH=str(rules),
              VIPFLOW_LISTS__RELOAD_INTERVAL_S=str(RELOAD_S))
    try:
        _vipflow(s, "lists", "create", "blocked-cards", "--kind", "card", "--description", "refused cards")
        s.start_sim()
        s.start_ingest()
        s.start_worker()
        yield s
    finally:
        s.stop()


def _deposit(stack: Stack, txid: str) -> dict[str, object]:
    """Send one deposit with the patron's card and wait for its decision; the record."""
    body = build_notification(PATRON, "deposit", Decimal("50.00"), transaction_id=txid)
    answer = stack.notify("deposit", body)
    assert answer.status_code == 200, answer.text
    return stack.wait_state(txid, ("approved", "review", "rejected"))


def test_a_blocked_card_is_rejected_by_a_running_worker_within_the_reload_interval(stack: Stack) -> None:
    """Approved before `lists add`; rejected by the same worker process within lists.reload_interval_s of it,
    the decided event naming the list version it used; the worker never restarted."""
    assert stack.worker is not None
    pid = stack.worker.process.pid
    before = _deposit(stack, "itlst00001")
    assert before["state"] == "approved"
    assert before["decision"]["lists"] == {"blocked-cards": 1}  # type: ignore[index]

    _vipflow(stack, "lists", "add", "blocked-cards", PATRON.vip_card_number, "--reason", "chargeback")
    added_at = time.monotonic()
    n, first_rejected_after = 1, None
    deadline = added_at + RELOAD_S + 15  # the claim is checked below; this only bounds a failing test
    while first_rejected_after is None and time.monotonic() < deadline:
        n += 1
        sent_at = time.monotonic()
        rec = _deposit(stack, f"itlst{n:05d}")
        if rec["state"] == "rejected":
            first_rejected_after = sent_at - added_at
            rejected = rec
    assert first_rejected_after is not None, "no deposit with the blocked card was rejected"
    # Sent at most one reload interval (plus the poll's own query and this loop's round trip) after the add.
    assert first_rejected_after <= RELOAD_S + 1.0, first_rejected_after
    assert "blocked-card" in [m["id"] for m in rejected["decision"]["matched"]]  # type: ignore[index]
    decided = next(e for e in stack.events(str(rejected["transaction_id"])) if e.kind == "decided")
    assert decided.data is not None and decided.data["decision"]["lists"] == {"blocked-cards": 2}
    assert _deposit(stack, "itlst99999")["state"] == "rejected"  # and from then on
    assert stack.worker.process.pid == pid and stack.worker.process.poll() is None
    assert stack.worker.saw("list loaded")  # the worker's log says which version it read
