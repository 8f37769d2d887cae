"""Ruleset history: the versions that went live (who, when, how), diff rule by rule, and rollback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from producers.cli import main
from rules import RuleTestsFailed, load_rulebook
from rules.diff import diff_rulesets
from rules.loader import parse_ruleset
from tests.conftest import ROOT
from worker.errors import InputError
from worker.ledger import Ledger
from worker.ledger.rule_history import CANDIDATE, CURRENT, RuleHistory
from worker.reload import RuleHolder
from worker.rollback import rollback, with_version
from worker.rule_live import LiveRecorder

WITHDRAW_V1 = """\
ruleset: withdraw
version: 1
default: review
freeze_on: [approve, review]
rules:
  - id: not-in-good-standing
    description: VIP says the account is not in good standing
    when: {account.is_in_good_standing: false}
    outcome: reject
  - id: small-ach
    when:
      all:
        - amount: {lte: 500}
        - fund_transfer_type: {in: [ACH, SDA]}
    outcome: approve
  - id: large
    when: {amount: {gt: 2500}}
    outcome: review
"""
# v2: small-ach's threshold and list change, "large" rejects, a velocity rule is added, standing is gone.
WITHDRAW_V2 = """\
ruleset: withdraw
version: 2
default: reject
freeze_on: [approve, review]
rules:
  - id: small-ach
    when:
      all:
        - amount: {lte: 250.00}
        - fund_transfer_type: {in: [ACH]}
    outcome: approve
  - id: large
    description: large withdrawals are refused now
    when: {amount: {gt: 2500}}
    outcome: reject
  - id: burst
    when: {velocity.count_1h: {gte: 5}}
    outcome: review
"""
TESTS_V1 = """\
ruleset: withdraw
cases:
  - name: a small ACH withdrawal is approved
    facts: {amount: 400, fund_transfer_type: ACH}
    expect: {outcome: approve, matched: [small-ach]}
"""
TESTS_V2 = """\
ruleset: withdraw
cases:
  - name: a 400 ACH withdrawal is no longer small
    facts: {amount: 400, fund_transfer_type: ACH}
    expect: {outcome: reject, matched: []}
"""


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    shutil.copy(ROOT / "rules" / "default" / "deposit.yaml", d)
    shutil.copy(ROOT / "rules" / "default" / "deposit_test.yaml", d)
    (d / "withdraw.yaml").write_text(WITHDRAW_V1)
    (d / "withdraw_test.yaml").write_text(TESTS_V1)
    return d


@pytest.fixture
def led(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as ledger:
        yield ledger


def _edit(d: Path, rules: str, tests: str) -> None:
    (d / "withdraw_test.yaml").write_text(tests)
    (d / "withdraw.yaml").write_text(rules)


def test_a_fleet_of_workers_records_each_version_once_in_order(rules_dir: Path, led: Ledger) -> None:
    """Two workers loading the same files record each version once; an edit is a new row that follows it."""
    history = RuleHistory(led.engine)
    a = RuleHolder(rules_dir, on_book=LiveRecorder(history, CURRENT, actor="worker@a"))
    b = RuleHolder(rules_dir, on_book=LiveRecorder(history, CURRENT, actor="worker@b"))
    rows = history.rows("withdraw")
    assert [(r.version, r.actor, r.how) for r in rows] == [(1, "worker@a", "loaded")]
    assert rows[0].tests_text == TESTS_V1
    _edit(rules_dir, WITHDRAW_V2, TESTS_V2)
    assert b.check() and a.check()
    rows = history.rows("withdraw")
    assert [(r.version, r.actor, r.how) for r in rows] == [(1, "worker@a", "loaded"), (2, "worker@b", "reloaded")]
    assert rows[1].tests_text == TESTS_V2
    assert [r.name for r in history.rows()].count("deposit") == 1
    # The text is kept by hash, so the version can be read back without the file.
    assert history.texts("withdraw", "1")[0]["text"] == WITHDRAW_V1


def test_a_refused_edit_never_goes_live(rules_dir: Path, led: Ledger) -> None:
    """An edit whose tests fail is refused by the reload gate and not recorded."""
    history = RuleHistory(led.engine)
    holder = RuleHolder(rules_dir, on_book=LiveRecorder(history, CURRENT, actor="worker@a"))
    _edit(rules_dir, WITHDRAW_V2, TESTS_V1)  # v1's tests fail on v2
    assert holder.check() is False
    assert [r.version for r in history.rows("withdraw")] == [1]


def test_a_candidate_is_recorded_with_its_share_and_only_when_it_takes_traffic(rules_dir: Path, led: Ledger) -> None:
    """A candidate at 0 % decides nothing and is not recorded; at 25 % it is, with role and share."""
    history = RuleHistory(led.engine)
    RuleHolder(rules_dir, on_book=LiveRecorder(history, CANDIDATE, share=Decimal(0)))
    assert history.rows(role=CANDIDATE) == []
    RuleHolder(rules_dir, on_book=LiveRecorder(history, CANDIDATE, share=Decimal("25.00"), actor="worker@c"))
    rows = history.rows("withdraw", role=CANDIDATE)
    assert [(r.version, r.share, r.actor) for r in rows] == [(1, Decimal("25.00"), "worker@c")]


def test_the_history_is_append_only(rules_dir: Path, led: Ledger) -> None:
    """The database refuses to change a recorded version."""
    RuleHolder(rules_dir, on_book=LiveRecorder(RuleHistory(led.engine), CURRENT))
    with pytest.raises(Exception, match="append-only"), led.engine.begin() as conn:
        conn.execute(text("UPDATE ruleset_history SET actor = 'someone else'"))


def test_with_version_changes_only_the_version() -> None:
    """The rolled-back text differs from the old one in its version line alone."""
    new = with_version(WITHDRAW_V1, 7)
    assert new == WITHDRAW_V1.replace("version: 1\n", "version: 7\n")
    assert parse_ruleset(new.encode(), "x").version == 7


def test_rollback_writes_the_old_version_as_a_new_one_and_restores_its_decisions(rules_dir: Path,
                                                                                 led: Ledger) -> None:
    """v1 went live, then v2; rolling back to 1 writes v1's rules and tests as v3, recorded with the actor,
    and the worker's reload decides as v1 did."""
    history = RuleHistory(led.engine)
    holder = RuleHolder(rules_dir, on_book=LiveRecorder(history, CURRENT, actor="worker@a"))
    facts = {"amount": "400.00", "fund_transfer_type": "ACH"}
    assert holder.current().decide("withdraw", facts).outcome == "approve"
    _edit(rules_dir, WITHDRAW_V2, TESTS_V2)
    assert holder.check()
    assert holder.current().decide("withdraw", facts).outcome == "reject"
    done = rollback(rules_dir, "withdraw", "1", history, "os:alice")
    assert (done.restored_version, done.new_version, done.tests_restored) == (1, 3, True)
    assert (rules_dir / "withdraw.yaml").read_text() == WITHDRAW_V1.replace("version: 1\n", "version: 3\n")
    assert (rules_dir / "withdraw_test.yaml").read_text() == TESTS_V1
    assert holder.check()
    assert holder.current().decide("withdraw", facts).outcome == "approve"
    assert holder.current().rulesets["withdraw"].version == 3
    rows = history.rows("withdraw")
    assert [(r.version, r.how, r.actor) for r in rows] == [
        (1, "loaded", "worker@a"), (2, "reloaded", "worker@a"), (3, "rollback", "os:alice")]
    assert rows[-1].note == f"rollback to v1 (sha256 {rows[0].content_hash[:12]})"


def test_a_rollback_that_fails_the_tests_writes_nothing(rules_dir: Path, led: Ledger) -> None:
    """With no tests recorded for the old version, the tests there now run against it: they fail, and
    neither file changes."""
    history = RuleHistory(led.engine)
    led.remember_rulesets(load_rulebook(rules_dir).rulesets.values())  # v1 decided something: text, no tests
    _edit(rules_dir, WITHDRAW_V2, TESTS_V2)
    with pytest.raises(RuleTestsFailed):
        rollback(rules_dir, "withdraw", "1", history, "os:alice")
    assert (rules_dir / "withdraw.yaml").read_text() == WITHDRAW_V2
    assert history.rows("withdraw") == []


def test_a_version_that_never_was_and_the_shipped_rules_are_refused(rules_dir: Path, led: Ledger) -> None:
    """Rollback names what is wrong: an unknown version, the rule set shipped inside vipflow, the version
    already in force, a rules.path that is another ruleset's file."""
    history = RuleHistory(led.engine)
    with pytest.raises(InputError, match="no withdraw version 9 in the ledger"):
        rollback(rules_dir, "withdraw", "9", history, "os:alice")
    with pytest.raises(InputError, match="shipped with vipflow"):
        rollback(ROOT / "rules" / "default", "withdraw", "1", history, "os:alice")
    RuleHolder(rules_dir, on_book=LiveRecorder(history, CURRENT))
    with pytest.raises(InputError, match="already holds the rules of withdraw v1"):
        rollback(rules_dir, "withdraw", "1", history, "os:alice")
    with pytest.raises(InputError, match="is one rule file, not the withdraw ruleset's"):
        rollback(rules_dir / "deposit.yaml", "withdraw", "1", history, "os:alice")


def test_diff_names_added_removed_and_changed_rules() -> None:
    """v1 -> v2: standing removed, burst added, small-ach's condition changed, large's outcome and
    description changed, the default changed; 2500 and 2500.00 are the same amount."""
    a = parse_ruleset(WITHDRAW_V1.encode(), "a.yaml")
    b = parse_ruleset(WITHDRAW_V2.encode(), "b.yaml")
    d = diff_rulesets(a, b, "withdraw v1", "withdraw v2")
    assert d.counts() == {"added": 1, "removed": 1, "changed": 2, "unchanged": 0}
    assert d.render() == [
        "--- withdraw v1",
        "+++ withdraw v2",
        "~ default: review -> reject",
        "- rule not-in-good-standing -> reject",
        "-     account.is_in_good_standing eq false",
        "~ rule small-ach",
        "    condition:",
        "      all:",
        "    -   amount lte 500",
        "    +   amount lte 250",
        "    -   fund_transfer_type in [ACH, SDA]",
        "    +   fund_transfer_type in [ACH]",
        "~ rule large",
        "    outcome: review -> reject",
        "    description: '' -> 'large withdrawals are refused now'",
        "+ rule burst -> review",
        "+     velocity.count_1h gte 5",
        "1 added, 1 removed, 2 changed, 0 unchanged",
    ]
    assert diff_rulesets(a, a, "x", "y").same


def test_diff_writes_a_list_as_the_rule_file_does() -> None:
    """A list condition reads ``in_list blocked-cards`` in text and JSON, never the model's repr."""
    head = "ruleset: withdraw\nversion: 1\ndefault: review\nrules:\n"
    a = parse_ruleset((head + "  - id: blocked\n    when: {vip_card_number: {in_list: blocked-cards}}\n"
                       "    outcome: reject\n").encode(), "a.yaml")
    b = parse_ruleset((head + "  - id: blocked\n    when: {vip_card_number: {not_in_list: good-cards}}\n"
                       "    outcome: reject\n  - id: nets\n    when: {location: {in_list: risky-nets}}\n"
                       "    outcome: review\n").encode(), "b.yaml")
    d = diff_rulesets(a, b, "a", "b")
    assert d.render()[3:8] == ["    condition:", "    - vip_card_number in_list blocked-cards",
                               "    + vip_card_number not_in_list good-cards", "+ rule nets -> review",
                               "+     location in_list risky-nets"]
    assert "ListRef" not in json.dumps(d.to_dict())
    assert "location in_list risky-nets" in json.dumps(d.to_dict())


def test_rules_diff_compares_a_ledger_version_with_the_file(rules_dir: Path, sqlite_url: str,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``vipflow rules diff withdraw@1 withdraw`` reads v1 from the ledger (no file of it left) and the file
    in rules.path; ``--json`` counts the same."""
    with Ledger.open(sqlite_url) as ledger:
        RuleHolder(rules_dir, on_book=LiveRecorder(RuleHistory(ledger.engine), CURRENT))
    _edit(rules_dir, WITHDRAW_V2, TESTS_V2)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    monkeypatch.setenv("VIPFLOW_RULES__PATH", str(rules_dir))
    assert main(["rules", "diff", "withdraw@1", "withdraw"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("--- withdraw v1 (sha256 ") and out[0].endswith(", ledger)")
    assert out[1] == f"+++ withdraw v2 (sha256 {parse_ruleset(WITHDRAW_V2.encode(), 'x').content_hash[:12]}, " \
                     f"{rules_dir / 'withdraw.yaml'})"
    assert "+ rule burst -> review" in out and out[-1] == "1 added, 1 removed, 2 changed, 0 unchanged"
    assert main(["rules", "diff", "withdraw@1", "withdraw", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"added": 1, "removed": 1, "changed": 2, "unchanged": 0}


def test_rules_history_and_rollback_commands(rules_dir: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``rules rollback withdraw 1`` prints what it wrote; ``rules history withdraw --json`` then lists v1, v2
    and the rollback's v3 with the CLI's actor; an unknown ruleset exits 2."""
    with Ledger.open(sqlite_url) as ledger:
        holder = RuleHolder(rules_dir, on_book=LiveRecorder(RuleHistory(ledger.engine), CURRENT, actor="worker@a"))
        _edit(rules_dir, WITHDRAW_V2, TESTS_V2)
        holder.check()
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    monkeypatch.setenv("VIPFLOW_RULES__PATH", str(rules_dir))
    monkeypatch.setenv("VIPFLOW_LEDGER__ACTOR", "ops-team")
    assert main(["rules", "rollback", "withdraw", "1", "--dry-run"]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith("dry run: withdraw v1 (sha256 ") and said[0].endswith("nothing was written")
    assert said[-1] == "1 added, 1 removed, 2 changed, 0 unchanged"  # from v2 back to v1's rules
    assert "- rule burst -> review" in said and (rules_dir / "withdraw.yaml").read_text() == WITHDRAW_V2
    assert main(["rules", "rollback", "withdraw", "1"]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith("withdraw: v1 (sha256 ") and " written back as v3 " in said[0]
    assert said[1].startswith("--- withdraw v2 (sha256 ") and said[2].startswith("+++ withdraw v3 (sha256 ")
    assert main(["rules", "history", "withdraw", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["version"], r["how"], r["actor"]) for r in rows] == [
        (1, "loaded", "worker@a"), (2, "reloaded", "worker@a"), (3, "rollback", "config:ops-team")]
    assert main(["rules", "history"]) == 0
    table = capsys.readouterr().out
    assert "rollback to v1" in table and "config:ops-team" in table
    assert main(["rules", "history", "payout"]) == 2


def test_rules_diff_of_two_files_needs_no_ledger_and_bad_references_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two rule files are compared with no ledger anywhere; a reference that names nothing is one line, exit 2."""
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", f"sqlite:///{tmp_path / 'absent' / 'ledger.db'}")
    (tmp_path / "v1.yaml").write_text(WITHDRAW_V1)
    (tmp_path / "v2.yaml").write_text(WITHDRAW_V2)
    assert main(["rules", "diff", str(tmp_path / "v1.yaml"), str(tmp_path / "v2.yaml")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 added, 1 removed, 2 changed, 0 unchanged"
    assert not (tmp_path / "absent").exists()
    assert main(["rules", "diff", "payout@1", str(tmp_path / "v2.yaml")]) == 2
    assert "not a rule file, nor a ruleset" in capsys.readouterr().err
    assert main(["rules", "diff", "withdraw@1", str(tmp_path / "v2.yaml")]) == 2  # a version needs the ledger
    assert "no ledger at" in capsys.readouterr().err
