"""Outcome labels end to end: decisions by a real worker, labels from a CSV through `vipflow labels import`
and from `POST /api/v1/labels` on `vipflow web`, and `vipflow rules report` against them, each a process.

One stack per module (simulator, ingestor, worker, web service). Six deposits are decided by the shipped
rules: four from ordinary patrons (approved by ``standard-deposit``), two from the patron VIP says is not
in good standing (rejected by ``account-not-in-good-standing``). Each test labels some of them and checks
the report's precision and recall against the figures worked out by hand in its docstring.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from producers.sim.patrons import PREFERRED_BAD, crowd_patron
from producers.sim.sender import build_notification
from tests.integration.harness import ROOT, Stack
from worker.ledger.api_tokens import TokenStore

pytestmark = pytest.mark.integration

GOOD = {"itlbd00001": Decimal("50.00"), "itlbd00002": Decimal("60.00"), "itlbd00003": Decimal("70.00"),
        "itlbd00004": Decimal("80.00")}
DAY = datetime.now(UTC).date().isoformat()  # the transactions' day: a label may not be dated before it
BAD = {"itlbr00001": Decimal("20.00"), "itlbr00002": Decimal("30.00")}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Simulator, ingestor, worker and web service on a ledger of their own (PostgreSQL when one answers),
    with the six deposits decided."""
    import redis

    from tests.conftest import TEST_REDIS_URL, stack_database

    redis.Redis.from_url(TEST_REDIS_URL).ping()
    s = Stack(TEST_REDIS_URL, stack_database("_labels"))
    try:
        s.start_sim()
        s.start_ingest()
        s.start_worker()
        s.start_web()
        for i, (txid, amount) in enumerate(GOOD.items()):
            body = build_notification(crowd_patron(7000 + i), "deposit", amount, transaction_id=txid)
            assert s.notify("deposit", body).status_code == 200
        for txid, amount in BAD.items():
            body = build_notification(PREFERRED_BAD, "deposit", amount, transaction_id=txid)
            assert s.notify("deposit", body).status_code == 200
        for txid in GOOD:
            assert s.wait_state(txid, ("approved", "review", "rejected"))["state"] == "approved"
        for txid in BAD:
            assert s.wait_state(txid, ("approved", "review", "rejected"))["state"] == "rejected"
        yield s
    finally:
        s.stop()


def vipflow(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``vipflow ARGS`` as a process on the stack's ledger."""
    return subprocess.run([sys.executable, "-m", "producers", *args], cwd=ROOT, env=stack.env, text=True,
                          capture_output=True, timeout=120)


def report(stack: Stack) -> dict[str, Any]:
    """`vipflow rules report --json`, as a document."""
    done = vipflow(stack, "rules", "report", "--json")
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def rule(doc: dict[str, Any], rule_id: str) -> dict[str, Any]:
    """The deposit ruleset's row (all versions) of ``rule_id``."""
    deposit = next(s for s in doc["rulesets"] if s["ruleset"] == "deposit")
    return next(r for r in deposit["rules"] if r["rule"] == rule_id)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_decisions_match_the_rules_the_figures_assume(stack: Stack) -> None:
    """The four ordinary deposits matched standard-deposit alone; the two others account-not-in-good-standing
    (the hand-worked figures below rest on it)."""
    for txid in GOOD:
        assert [m["id"] for m in (stack.record(txid) or {})["decision"]["matched"]] == ["standard-deposit"]
    for txid in BAD:
        matched = [m["id"] for m in (stack.record(txid) or {})["decision"]["matched"]]
        assert "account-not-in-good-standing" in matched and "standard-deposit" not in matched, matched


def test_a_bad_row_imports_nothing_and_names_its_line(stack: Stack, tmp_path: Path) -> None:
    """A file whose third line has an unknown label, and whose fourth names a transaction the ledger does
    not have, exits 2 naming both lines, and records nothing (the good row on line 2 included)."""
    path = write(tmp_path, "bad.csv", f"transaction_id,label,date\nitlbd00001,R01,{DAY}\n"
                                      f"itlbd00002,R99,{DAY}\nnosuchtx001,R01,{DAY}\n")
    before = report(stack)
    done = vipflow(stack, "labels", "import", str(path))
    assert done.returncode == 2, done.stderr
    assert "bad.csv:3: 'R99' is not a NACHA return reason code" in done.stderr
    assert "nothing of it was recorded" in done.stderr
    assert report(stack)["labelled"] == before["labelled"] == 0
    # Line 3 fixed: now the ledger's check names line 4, and still nothing is recorded.
    path = write(tmp_path, "bad.csv", f"transaction_id,label,date\nitlbd00001,R01,{DAY}\n"
                                      f"itlbd00002,R10,{DAY}\nnosuchtx001,R01,{DAY}\n")
    done = vipflow(stack, "labels", "import", str(path))
    assert done.returncode == 2
    assert "bad.csv:4: no transaction 'nosuchtx001' in the ledger" in done.stderr
    assert report(stack)["labelled"] == 0


def test_labels_from_a_csv_give_the_precision_worked_out_by_hand(stack: Stack, tmp_path: Path) -> None:
    """Labels: itlbd00001 R01, itlbd00002 and itlbd00003 confirmed good, itlbd00004 none; itlbr00001
    confirmed fraud, itlbr00002 confirmed good. The deposit ruleset then has 5 labelled: 2 bad, 3 good.
    standard-deposit (approves) matched 4, 3 labelled, 2 good: precision 2/3, recall 2/3 (of 3 good),
    bad amount 50.00; account-not-in-good-standing (rejects) matched 2, both labelled, 1 bad: precision 1/2,
    recall 1/2 (of 2 bad). Before: no precision at all. A second file relabelling itlbd00002 R10 (its
    latest label wins) makes standard-deposit 1/3 good; importing it again records nothing."""
    before = report(stack)
    assert rule(before, "standard-deposit")["precision"] is None
    path = write(tmp_path, "labels.csv", f"itlbd00001,R01,{DAY}\nitlbd00002,confirmed_good,{DAY}\n"
                                         f"itlbd00003,good,{DAY}\nitlbr00001,confirmed_fraud,{DAY}\n"
                                         f"itlbr00002,confirmed_good,{DAY}\n")
    done = vipflow(stack, "labels", "import", str(path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["recorded"] == 5

    doc = report(stack)
    deposit = next(s for s in doc["rulesets"] if s["ruleset"] == "deposit")
    assert (deposit["decided"]["labelled"], deposit["decided"]["bad"], deposit["decided"]["good"]) == (5, 2, 3)
    approve = rule(doc, "standard-deposit")
    assert (approve["matched"], approve["labelled"], approve["hits"], approve["positives"]) == (4, 3, 2, 3)
    assert approve["precision"] == round(2 / 3, 4) and approve["recall"] == round(2 / 3, 4)
    assert (approve["amount"], approve["bad_amount"], approve["bad_labels"]) == ("260.00", "50.00", {"R01": 1})
    assert approve["outcomes"] == {"approve": 4, "review": 0, "reject": 0} and approve["caused"] == 4
    reject = rule(doc, "account-not-in-good-standing")
    assert (reject["matched"], reject["labelled"], reject["hits"], reject["positives"]) == (2, 2, 1, 2)
    assert reject["precision"] == 0.5 and reject["recall"] == 0.5
    assert reject["bad_amount"] == "20.00" and reject["outcomes"]["reject"] == 2

    again = write(tmp_path, "more.csv", f"transaction_id,label,date\nitlbd00002,R10,{DAY}\n")
    assert vipflow(stack, "labels", "import", str(again)).returncode == 0
    repeat = vipflow(stack, "labels", "import", str(again), "--json")
    assert json.loads(repeat.stdout)["recorded"] == 0 and json.loads(repeat.stdout)["already"] == 1
    approve = rule(report(stack), "standard-deposit")
    assert (approve["labelled"], approve["hits"], approve["precision"]) == (3, 1, round(1 / 3, 4))
    assert approve["recall"] == 0.5  # 1 good matched of the 2 good left (itlbd00003, itlbr00002)


def test_labels_posted_with_a_token_change_the_report_and_name_their_actor(stack: Stack) -> None:
    """POST /api/v1/labels with a `labels` token: 201; itlbr00002 confirmed fraud makes
    account-not-in-good-standing 2 of 2 bad (precision 1.0); `labels show` names the token as the actor.
    A token without the scope gets 403, an unknown transaction 422 naming its item, and nothing of
    that request is recorded."""
    tokens = TokenStore(stack.ledger.engine)
    token = tokens.create("bank-returns", ["labels"], "test")
    other = tokens.create("site-only", ["status"], "test")
    url = f"{stack.web_url}/api/v1/labels"
    body = {"labels": [{"transaction_id": "itlbr00002", "label": "confirmed_fraud", "date": DAY}]}
    assert requests.post(url, json=body, headers={"Authorization": f"Bearer {other}"}, timeout=10).status_code == 403
    refused = requests.post(url, json={"labels": [*body["labels"],
                                                  {"transaction_id": "itlbr00002", "label": "R99", "date": DAY},
                                                  {"transaction_id": "nosuchtx002", "label": "R01", "date": DAY},
                                                  {"transaction_id": "itlbr00001", "label": "R01", "date": "soon"}]},
                            headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert refused.status_code == 422 and "labels[2]: no transaction 'nosuchtx002'" in refused.json()["error"]
    problems = refused.json()["problems"]  # the ledger's problem named with the malformed items, in one answer
    assert [p.split(":", 1)[0] for p in problems] == ["labels[1]", "labels[2]", "labels[3]"], problems
    assert "not a NACHA return reason code" in problems[0] and "is not a date" in problems[2]
    assert rule(report(stack), "account-not-in-good-standing")["precision"] != 1.0

    answer = requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 201, answer.text
    assert answer.json()["recorded"] == 1
    short = requests.post(f"{stack.web_url}/labels", json=body, headers={"Authorization": f"Bearer {token}"},
                          timeout=10)  # the same route at its short path: the same label is not recorded twice
    assert short.status_code == 201 and (short.json()["recorded"], short.json()["already"]) == (0, 1), short.text
    assert requests.post(f"{stack.web_url}/labels", json=body, timeout=10).status_code == 401
    reject = rule(report(stack), "account-not-in-good-standing")
    assert (reject["hits"], reject["labelled"], reject["precision"]) == (2, 2, 1.0)
    shown = vipflow(stack, "labels", "show", "itlbr00002", "--json")
    latest = json.loads(shown.stdout.splitlines()[-1])
    assert (latest["label"], latest["actor"], latest["source"]) == ("confirmed_fraud", "token:bank-returns", "api")
