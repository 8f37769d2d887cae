"""The backtest with two versions from the ledger's history (no files on disk) and with the rollout's sides."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from producers.cli import main
from rules import RuleBook, load_rulebook
from tests.unit.test_pipeline_flow import deposit
from tests.unit.test_replay_backtest import EVERYTHING, PREFIX, RULES, World, _decided, world
from worker.backtest import OUTCOME, Against, backtest
from worker.config import Settings
from worker.errors import InputError
from worker.ledger.rule_history import CURRENT, RuleHistory
from worker.pipeline import process
from worker.reload import RuleHolder
from worker.rollout import CANDIDATE, side_for
from worker.rule_live import LiveRecorder
from worker.rule_versions import from_ledger

__all__ = ["world"]


def _lowered(tmp_path: Path, version: int) -> Path:
    """The shipped rules with large-withdrawal at 500 instead of 2,500 (its tests adjusted), as ``version``."""
    rules = tmp_path / f"rules-v{version}"
    shutil.copytree(RULES, rules)
    text = (rules / "withdraw.yaml").read_text()
    old_version = load_rulebook(RULES).rulesets["withdraw"].version
    text = text.replace("when: {amount: {gt: 2500}}", "when: {amount: {gt: 500}}")
    (rules / "withdraw.yaml").write_text(text.replace(f"version: {old_version}\n", f"version: {version}\n", 1))
    (rules / "withdraw_test.yaml").unlink()  # the shipped cases expect 2,500
    return rules


def _went_live(w: World, path: Path) -> RuleBook:
    """``path``'s rules recorded as gone live, as a worker loading them records them."""
    holder = RuleHolder(path, on_book=LiveRecorder(RuleHistory(w.ledger.engine), CURRENT))
    return holder.current()


def test_two_versions_from_the_history_compare_without_their_files(world: World, tmp_path: Path) -> None:
    """v2 (shipped) and v50 (large-withdrawal at 500) went live; with both folders gone, the 1,000
    withdrawal is the one outcome that differs between them, and deposits are not counted."""
    _decided(world, "wdbv00001", "100.00")
    _decided(world, "wdbv00002", "1000.00")
    _decided(world, "wdbv00003", "3000.00")
    copy = tmp_path / "shipped"
    shutil.copytree(RULES, copy)
    shipped = _went_live(world, copy).rulesets["withdraw"]
    lowered = _went_live(world, _lowered(tmp_path, 50)).rulesets["withdraw"]
    shutil.rmtree(copy)
    shutil.rmtree(tmp_path / "rules-v50")
    history = RuleHistory(world.ledger.engine)
    a = from_ledger("withdraw", str(shipped.version), history)
    b = from_ledger("withdraw", "50", history)
    assert (a.ruleset.content_hash, b.ruleset.content_hash) == (shipped.content_hash, lowered.content_hash)
    report = backtest(EVERYTHING, world.st, RuleBook([b.ruleset]), Settings().limits,
                      against=Against(baseline=RuleBook([a.ruleset]), only_type="withdraw"), baseline_label=a.label)
    assert [(d.transaction_id, d.change, d.recorded, d.new) for d in report.differences] == [
        ("wdbv00002", OUTCOME, "approve", "review")]
    assert report.transactions == 3 and report.totals()["baseline"] == a.label


def test_a_version_number_two_texts_carried_is_ambiguous(world: World, tmp_path: Path) -> None:
    """Two texts went live as the same version number: the reference names both hashes to choose from."""
    copy = tmp_path / "shipped"
    shutil.copytree(RULES, copy)
    version = _went_live(world, copy).rulesets["withdraw"].version
    lowered = _went_live(world, _lowered(tmp_path, version)).rulesets["withdraw"]
    with pytest.raises(InputError, match="names 2 different texts") as caught:
        from_ledger("withdraw", str(version), RuleHistory(world.ledger.engine))
    assert lowered.content_hash[:12] in str(caught.value)
    found = from_ledger("withdraw", lowered.content_hash[:10], RuleHistory(world.ledger.engine))
    assert found.ruleset.content_hash == lowered.content_hash


def test_the_rollout_backtest_decides_each_transaction_on_its_side(world: World, tmp_path: Path) -> None:
    """With the lowered rules as candidate at 50 %, the 1,000 withdrawals differ exactly where their id lands
    on the candidate, and the sides are counted."""
    from producers.commands.replay_cmd import _rollout_pick

    ids = [f"wdbr{i:05d}" for i in range(12)]
    for txid in ids:
        _decided(world, txid, "1000.00")
        world.st.client.delete(*world.st.client.keys(f"{PREFIX}:velocity:*"))
    current, candidate = load_rulebook(RULES), load_rulebook(_lowered(tmp_path, 51))
    report = backtest(EVERYTHING, world.st, current, Settings().limits,
                      against=Against(pick=_rollout_pick(current, candidate, Decimal(50))))
    on_candidate = {t for t in ids if side_for(t, Decimal(50)) == CANDIDATE}
    assert {d.transaction_id for d in report.differences} == on_candidate
    assert report.sides == {"candidate": len(on_candidate), "current": len(ids) - len(on_candidate)}


def test_replay_dry_run_compare_prints_the_differences(world: World, tmp_path: Path, sqlite_url: str,
                                                       redis_url: str, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``vipflow replay --dry-run --compare withdraw@2 withdraw@52 --json``: one outcome change, then totals."""
    _decided(world, "wdbc00001", "1000.00")
    copy = tmp_path / "shipped"
    shutil.copytree(RULES, copy)
    version = _went_live(world, copy).rulesets["withdraw"].version
    _went_live(world, _lowered(tmp_path, 52))
    for name, value in (("DATABASE__URL", sqlite_url), ("REDIS__URL", redis_url), ("REDIS__KEY_PREFIX", PREFIX)):
        monkeypatch.setenv(f"VIPFLOW_{name}", value)
    assert main(["replay", "--dry-run", "--compare", f"withdraw@{version}", "withdraw@52", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["transaction_id"], d["recorded"], d["new"]) for d in lines[:-1]] == [("wdbc00001", "approve", "review")]
    assert lines[-1]["totals"]["outcome_changes"] == 1
    assert main(["replay", "--compare", "withdraw@1", "withdraw@52"]) == 2  # only with --dry-run


def test_replay_dry_run_candidate_leaves_types_it_lacks_to_the_current_rules(
        world: World, tmp_path: Path, sqlite_url: str, redis_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``--candidate`` with a candidate holding only a withdraw ruleset: the 1,000 withdrawal changes, and a
    deposit is decided by the current rules (no error), as the worker would."""
    _decided(world, "wdbk00001", "1000.00")
    entry = world.st.archive.append("deposit", json.dumps(deposit("dpbk00001")).encode(), status="valid",
                                    transaction_id="dpbk00001", error=None)
    assert process(entry, world.deps) is not None
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    shutil.copy(_lowered(tmp_path, 53) / "withdraw.yaml", candidate)
    for name, value in (("DATABASE__URL", sqlite_url), ("REDIS__URL", redis_url), ("REDIS__KEY_PREFIX", PREFIX),
                        ("RULES__CANDIDATE", str(candidate))):
        monkeypatch.setenv(f"VIPFLOW_{name}", value)
    assert main(["replay", "--dry-run", "--candidate", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["transaction_id"], d["change"], d["new"]) for d in lines[:-1]] == [("wdbk00001", "outcome", "review")]
    assert lines[-1]["totals"]["errors"] == 0 and lines[-1]["totals"]["transactions"] == 2
