"""The rules report's arithmetic: precision and recall of approving and flagging rules, the default,
versions and shadow versions, and amounts, on decisions recorded in a real ledger."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.labels.parse import LabelRow
from worker.labels.report import rules_report
from worker.labels.store import LabelStore
from worker.ledger import Ledger, TransactionRecord
from worker.ledger.states import State

TODAY = datetime.now(UTC).date()


def decision(outcome: str, *matched: tuple[str, str], version: int = 1, digest: str = "h1",
             ruleset: str = "withdraw") -> dict[str, Any]:
    return {"outcome": outcome, "matched": [{"id": i, "description": "", "outcome": o} for i, o in matched],
            "used_default": not matched, "ruleset": ruleset, "version": version, "content_hash": digest,
            "freeze": False}


APPROVE = ("small", "approve")
REVIEW = ("big", "review")
REJECT = ("blocked", "reject")
# transaction id: (amount, decision, shadow decision, label)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any] | None, str | None]] = {
    "tx01": ("10.00", decision("approve", APPROVE), None, "confirmed_good"),
    "tx02": ("20.00", decision("approve", APPROVE), None, "R01"),
    "tx03": ("30.00", decision("approve", APPROVE), None, None),
    "tx04": ("40.00", decision("review", APPROVE, REVIEW), None, "confirmed_fraud"),
    "tx05": ("50.00", decision("review", REVIEW), None, "confirmed_good"),
    "tx06": ("60.00", decision("reject", REJECT), None, "chargeback"),
    "tx07": ("70.00", decision("review"), None, "confirmed_good"),  # the default
    "tx08": ("80.00", decision("approve", APPROVE, version=2, digest="h2"),
             decision("reject", REJECT, version=3, digest="h3"), "R10"),
}


@pytest.fixture
def ledger_db(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as led:
        rows = []
        for i, (txid, (amount, live, shadow, label)) in enumerate(CASES.items()):
            led.write(None, TransactionRecord(transaction_id=txid, transaction_type="withdraw", amount=amount,
                                              state=State.DECIDED, decision=live, shadow_decision=shadow))
            if label is not None:
                rows.append(LabelRow(f"f.csv:{i + 1}", i + 1, txid, label, TODAY))
        led.write(None, TransactionRecord(transaction_id="tx99", amount="5.00"))  # never decided: not counted
        LabelStore(led.engine).record(rows, actor="test", source="csv", sha256="0" * 64)
        yield led


def by_rule(scope: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["rule"]: r for r in scope["rules"]}


def test_precision_and_recall_of_each_rule_over_all_versions(ledger_db: Ledger) -> None:
    """Worked by hand. Labelled: 7 of 8 decided (tx03 not); bad tx02 tx04 tx06 tx08 (4), good tx01 tx05
    tx07 (3). small (approve) matched tx01-04, tx08: labelled 4, good 1 (tx01): precision 1/4, recall 1/3.
    big (review) matched tx04, tx05: bad 1: precision 1/2, recall 1/4. blocked (reject) tx06: 1/1, 1/4.
    (default) (review) tx07: 0/1, 0/4."""
    doc = rules_report(ledger_db.engine).to_dict()
    assert (doc["transactions"], doc["labelled"]) == (8, 7)
    [whole] = doc["rulesets"]
    assert (whole["decided"]["bad"], whole["decided"]["good"]) == (4, 3)
    rules = by_rule(whole)
    small = rules["small"]
    assert (small["matched"], small["labelled"], small["hits"], small["positives"]) == (5, 4, 1, 3)
    assert (small["precision"], small["recall"]) == (0.25, 0.3333)
    assert small["outcomes"] == {"approve": 4, "review": 1, "reject": 0} and small["caused"] == 4
    assert (small["amount"], small["bad_amount"], small["good_amount"]) == ("180.00", "140.00", "10.00")
    assert small["bad_labels"] == {"R01": 1, "R10": 1, "confirmed_fraud": 1}
    assert (rules["big"]["precision"], rules["big"]["recall"]) == (0.5, 0.25)
    assert (rules["blocked"]["precision"], rules["blocked"]["recall"]) == (1.0, 0.25)
    assert (rules["(default)"]["outcome"], rules["(default)"]["precision"], rules["(default)"]["recall"]) == (
        "review", 0.0, 0.0)
    # The ruleset as a whole: flagged tx04-07, all labelled, tx04 and tx06 bad: precision 2/4, recall 2/4;
    # approved tx01-03 and tx08, 3 labelled, tx01 good: precision 1/3, recall 1/3; bad money approved: tx02, tx08.
    assert (whole["flagged"]["precision"], whole["flagged"]["recall"]) == (0.5, 0.5)
    assert (whole["approved"]["precision"], whole["approved"]["recall"]) == (0.3333, 0.3333)
    assert whole["approved"]["bad_amount"] == "100.00"


def test_each_version_and_shadow_version_is_measured_on_its_own(ledger_db: Ledger) -> None:
    """Version 2 decided tx08 alone (bad): small's precision 0/1, recall undefined (no good in v2). The
    shadow version 3 decided tx08 too: blocked 1/1, recall 1/1; it is not counted in the live ruleset."""
    doc = rules_report(ledger_db.engine).to_dict()
    versions = {(s["role"], s["version"]): s for s in doc["versions"]}
    assert set(versions) == {("live", 1), ("live", 2), ("shadow", 3)}
    v2 = by_rule(versions[("live", 2)])["small"]
    assert (v2["matched"], v2["precision"], v2["recall"]) == (1, 0.0, None)
    shadow = by_rule(versions[("shadow", 3)])["blocked"]
    assert (shadow["matched"], shadow["precision"], shadow["recall"]) == (1, 1.0, 1.0)
    assert by_rule(doc["rulesets"][0])["blocked"]["matched"] == 1  # tx06 only: shadows are not live
    assert versions[("live", 1)]["decided"]["matched"] == 7


def test_the_window_selects_transactions_by_when_they_were_first_received(ledger_db: Ledger) -> None:
    """A window that ends before the transactions were received counts none; an open one counts all."""
    import time

    now_ms = int(time.time() * 1000)
    assert rules_report(ledger_db.engine, until_ms=now_ms - 3_600_000).to_dict()["transactions"] == 0
    assert rules_report(ledger_db.engine, since_ms=now_ms - 3_600_000).to_dict()["transactions"] == 8


def test_without_labels_nothing_has_a_precision(ledger_url: str) -> None:
    """Decisions without any label: matches and amounts are counted, precision and recall are None."""
    with Ledger.open(ledger_url) as led:
        led.write(None, TransactionRecord(transaction_id="tx01", amount="12.34", state=State.DECIDED,
                                          decision=decision("approve", APPROVE)))
        [rule] = rules_report(led.engine).to_dict()["rulesets"][0]["rules"]
    assert (rule["matched"], rule["amount"], rule["labelled"], rule["precision"], rule["recall"]) == (
        1, "12.34", 0, None, None)
