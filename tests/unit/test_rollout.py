"""Percentage rollout: a stable share of transactions decided and acted on by the candidate rules."""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from rules import RuleBook, RuleError, RuleTestsFailed
from rules.testing import verify_tested_rulebook
from tests.conftest import ROOT
from tests.unit.test_pipeline_flow import World, archive, deposit, withdraw
from worker.config import RulesSettings, Settings, load_settings
from worker.errors import ConfigError
from worker.ledger import Ledger
from worker.pipeline import process
from worker.reload import RuleHolder
from worker.rollout import BUCKETS, CANDIDATE, CURRENT, bucket, choose, side_for
from worker.startup import check_can_work

KEY = base64.b64encode(b"k" * 32).decode()
# A candidate that rejects every deposit: which side decided is plain from the outcome.
CANDIDATE_DEPOSIT = """\
ruleset: deposit
version: 40
default: reject
freeze_on: []
rules:
  - id: candidate-huge
    description: the candidate reviews huge deposits
    when: {amount: {gt: 90000}}
    outcome: review
"""
CANDIDATE_DEPOSIT_TEST = """\
ruleset: deposit
cases:
  - name: the candidate rejects a small deposit
    facts: {amount: 10}
    expect: {outcome: reject, matched: []}
"""


@pytest.fixture
def candidate_dir(tmp_path: Path) -> Path:
    d = tmp_path / "candidate"
    d.mkdir()
    (d / "deposit.yaml").write_text(CANDIDATE_DEPOSIT)
    (d / "deposit_test.yaml").write_text(CANDIDATE_DEPOSIT_TEST)
    return d


def with_rollout(w: World, candidate: Path, share: str) -> World:
    settings = w.deps.settings.model_copy(update={"rules": RulesSettings(
        candidate=candidate, candidate_share=Decimal(share))})
    deps = replace(w.deps, settings=settings, candidate=RuleHolder(candidate, verify=verify_tested_rulebook))
    return replace(w, deps=deps)


def test_a_transaction_id_always_has_the_same_bucket() -> None:
    """The bucket is a pure function of the id (sha256, not Python's per-process hash): pinned values."""
    assert [bucket(t) for t in ("dep000001", "wd0000001", "TX-7")] == [
        bucket("dep000001"), bucket("wd0000001"), bucket("TX-7")]
    assert bucket("dep000001") == 4982  # changing the hash would move live transactions between sides
    assert all(0 <= bucket(f"t{i}") < BUCKETS for i in range(1000))


def test_the_share_is_close_to_the_candidate_share_and_raising_it_keeps_the_earlier_ones() -> None:
    """30 % of 20,000 ids land on the candidate (within 1 point); each of them stays there at 50 %."""
    ids = [f"txn{i:08d}" for i in range(20_000)]
    at_30 = {t for t in ids if side_for(t, Decimal("30")) == CANDIDATE}
    at_50 = {t for t in ids if side_for(t, Decimal("50")) == CANDIDATE}
    assert abs(len(at_30) / len(ids) - 0.30) < 0.01
    assert at_30 <= at_50
    assert not any(side_for(t, Decimal(0)) == CANDIDATE for t in ids[:500])
    assert all(side_for(t, Decimal(100)) == CANDIDATE for t in ids[:500])


def test_a_candidate_without_the_ruleset_leaves_that_type_to_the_current_rules(book: RuleBook,
                                                                               candidate_dir: Path) -> None:
    """The candidate has only a deposit ruleset: a withdrawal on the candidate's side is decided current."""
    current = RuleHolder(ROOT / "rules" / "default", book=book)
    cand = RuleHolder(candidate_dir, verify=verify_tested_rulebook)
    assert choose("any", "withdraw", current, cand, Decimal(100)) == (book, CURRENT)
    chosen, side = choose("any", "deposit", current, cand, Decimal(100))
    assert side == CANDIDATE and chosen.rulesets["deposit"].version == 40


def test_the_candidate_decides_and_acts_and_the_decision_records_its_side(world: World, candidate_dir: Path) -> None:
    """At 100 % the candidate rejects a deposit the current rules approve: nothing goes to VIP, and the
    decided event carries side 'candidate'; counted by side."""
    w = with_rollout(world, candidate_dir, "100")
    before = REGISTRY.get_sample_value("vipflow_decisions_by_side_total",
                                       {"ruleset": "deposit", "side": "candidate", "outcome": "reject"}) or 0
    rec = process(archive(w, "deposit", deposit("roll00001")), w.deps)
    assert rec is not None and rec.state == "rejected"
    assert w.vip.calls["approve"] == 0
    assert rec.decision is not None and rec.decision["side"] == CANDIDATE and rec.decision["version"] == 40
    [decided] = [e for e in w.ledger.events("roll00001") if e.kind == "decided"]
    assert decided.data is not None and decided.data["decision"]["side"] == CANDIDATE
    after = REGISTRY.get_sample_value("vipflow_decisions_by_side_total",
                                      {"ruleset": "deposit", "side": "candidate", "outcome": "reject"})
    assert after == before + 1


def test_the_current_side_acts_as_before_and_says_so(world: World, candidate_dir: Path) -> None:
    """At 0 % nothing reaches the candidate: the deposit is approved by the shipped rules, side 'current'."""
    w = with_rollout(world, candidate_dir, "0")
    rec = process(archive(w, "deposit", deposit("roll00002")), w.deps)
    assert rec is not None and rec.state == "approved"
    assert rec.decision is not None and rec.decision["side"] == CURRENT
    rec = process(archive(w, "withdraw", withdraw("roll00003")), w.deps)
    assert rec is not None and rec.decision is not None and rec.decision["side"] == CURRENT


def test_each_transaction_is_decided_by_the_side_its_id_picks(world: World, candidate_dir: Path) -> None:
    """At 30 %, each of 40 deposits is decided by the version of the side its id picks, and acted on:
    rejected exactly when that side is the candidate."""
    w = with_rollout(world, candidate_dir, "30")
    sides = {}
    for i in range(40):
        txid = f"rollmix{i:03d}"
        rec = process(archive(w, "deposit", deposit(txid)), w.deps)
        assert rec is not None and rec.decision is not None
        sides[txid] = rec.decision["side"]
        assert rec.decision["side"] == side_for(txid, Decimal(30))
        # The candidate (v40) rejects all; the shipped rules (v2) approve, or review once velocity builds up.
        assert rec.decision["version"] == (40 if rec.decision["side"] == CANDIDATE else 2)
        assert (rec.state == "rejected") == (rec.decision["side"] == CANDIDATE)
    assert set(sides.values()) == {CANDIDATE, CURRENT}


def test_a_share_without_a_candidate_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """rules.candidate_share above 0 with no rules.candidate is refused naming the section; over 100 too."""
    monkeypatch.setenv("VIPFLOW_RULES__CANDIDATE_SHARE", "30")
    with pytest.raises(ConfigError, match=r"rules\.candidate is not set"):
        load_settings(None)
    monkeypatch.setenv("VIPFLOW_RULES__CANDIDATE", "/somewhere")
    monkeypatch.setenv("VIPFLOW_RULES__CANDIDATE_SHARE", "100.5")
    with pytest.raises(ConfigError, match=r"rules\.candidate_share"):
        load_settings(None)


def test_a_candidate_without_tests_is_refused(tmp_path: Path, candidate_dir: Path) -> None:
    """A candidate rule file with no tests beside it never takes traffic: its gate names the file."""
    (candidate_dir / "deposit_test.yaml").unlink()
    with pytest.raises(RuleError, match="has no tests beside it"):
        verify_tested_rulebook(candidate_dir)


def test_a_candidate_whose_tests_fail_stops_the_worker_at_start(candidate_dir: Path) -> None:
    """check_can_work refuses a candidate whose own tests fail, naming rules.candidate."""
    (candidate_dir / "deposit_test.yaml").write_text(CANDIDATE_DEPOSIT_TEST.replace("reject", "approve"))
    settings = Settings.model_validate({"vip": {"operator_id": "op-1", "secret_key1": KEY},
                                        "rules": {"candidate": str(candidate_dir), "candidate_share": "30"}})
    with pytest.raises(ConfigError) as caught:
        check_can_work(settings)
    assert caught.value.key == "rules.candidate"
    assert "rule test(s) failed" in str(caught.value)
    with pytest.raises(RuleTestsFailed):
        verify_tested_rulebook(candidate_dir)


def test_a_later_candidate_edit_without_tests_is_refused_and_the_loaded_one_stays(tmp_path: Path) -> None:
    """Hot reload of the candidate uses its stricter gate: an edit whose tests were removed keeps the old book."""
    d = tmp_path / "cand"
    shutil.copytree(ROOT / "rules" / "default", d)
    holder = RuleHolder(d, verify=verify_tested_rulebook)
    kept = holder.current().content_hash
    (d / "deposit.yaml").write_text((d / "deposit.yaml").read_text().replace("version: 2", "version: 77"))
    (d / "deposit_test.yaml").unlink()
    assert holder.check() is False
    assert holder.current().content_hash == kept


def test_the_ledger_keeps_the_side_in_the_decided_event_on_sqlite(ledger: Ledger, world: World,
                                                                  candidate_dir: Path) -> None:
    """The decided event read back from the ledger names the side (the record snapshot too)."""
    w = with_rollout(world, candidate_dir, "100")
    process(archive(w, "deposit", deposit("roll00009")), w.deps)
    stored = ledger.load("roll00009")
    assert stored is not None and stored.record.decision is not None
    assert stored.record.decision["side"] == CANDIDATE


def test_rules_explain_uses_the_side_the_transaction_id_lands_on(candidate_dir: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With a rollout configured, explain says which side the facts' transaction_id is on and explains with
    that side's rules; --side overrides."""
    from producers.cli import main

    on_candidate = next(f"x{i}" for i in range(1000) if side_for(f"x{i}", Decimal(30)) == CANDIDATE)
    on_current = next(f"x{i}" for i in range(1000) if side_for(f"x{i}", Decimal(30)) == CURRENT)
    monkeypatch.setenv("VIPFLOW_RULES__CANDIDATE", str(candidate_dir))
    monkeypatch.setenv("VIPFLOW_RULES__CANDIDATE_SHARE", "30")
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"transaction_id": on_candidate, "amount": 50}))
    assert main(["rules", "explain", "deposit", str(facts)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"side: candidate (transaction {on_candidate} is in bucket {bucket(on_candidate)} ")
    assert "ruleset deposit v40" in out and "outcome: reject (default)" in out
    facts.write_text(json.dumps({"transaction_id": on_current, "amount": 50}))
    assert main(["rules", "explain", "deposit", str(facts), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["side"].startswith("current (") and shown["decision"]["version"] == 2
    assert main(["rules", "explain", "deposit", str(facts), "--side", "candidate"]) == 0
    assert "ruleset deposit v40" in capsys.readouterr().out
    facts.write_text(json.dumps({"transaction_id": on_candidate, "amount": 50}))
    assert main(["rules", "explain", "withdraw", str(facts)]) == 0  # the candidate has no withdraw ruleset
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("but the candidate has no withdraw ruleset)")
    assert "ruleset withdraw v" in out


def test_tx_show_names_the_rollout_side_while_a_rollout_runs(world: World, candidate_dir: Path) -> None:
    """A decision taken during a rollout shows its side and the share; one taken without a rollout shows
    neither (its record still says side 'current')."""
    from producers.commands.txview import render

    w = with_rollout(world, candidate_dir, "100")
    rec = process(archive(w, "deposit", deposit("roll00010")), w.deps)
    assert rec is not None
    events = [e.to_dict() for e in w.ledger.events("roll00010")]
    text = render(rec.to_dict(), events)
    assert "  rollout side: candidate (rules.candidate_share 100.00 %)" in text
    assert "ruleset deposit v40 (" in text and ", side candidate" in text
    plain = process(archive(world, "deposit", deposit("roll00011")), world.deps)
    assert plain is not None and plain.decision is not None and plain.decision["side"] == CURRENT
    assert "rollout side" not in render(plain.to_dict())
