"""`vipflow rules check|test|explain` on the shipped rule set and on broken ones (run as a real subprocess)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "rules" / "default"


def _vipflow(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producers", "rules", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def _copy_default(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(DEFAULT, target)
    return target


def test_check_accepts_the_shipped_rules() -> None:
    """`rules check rules/default` exits 0 and reports both rulesets."""
    result = _vipflow("check", "rules/default")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ruleset deposit v" in result.stdout and "ruleset withdraw v" in result.stdout


def test_the_shipped_rule_tests_all_pass() -> None:
    """`rules test rules/default` closes with 'N passed, 0 failed' and exits 0."""
    result = _vipflow("test", "rules/default")
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    passed, failed = last.split(", ")
    assert passed.endswith(" passed") and int(passed.split()[0]) >= 40
    assert failed == "0 failed"


def test_check_reports_a_broken_rule_file_at_its_line(tmp_path: Path) -> None:
    """A rule with an unknown operator gets the FILE:LINE: rule 'ID': ... line and exit 1."""
    rules = _copy_default(tmp_path)
    path = rules / "withdraw.yaml"
    text = path.read_text(encoding="utf-8").replace("when: {amount: {gt: 2500}}", "when: {amount: {gtt: 2500}}")
    path.write_text(text, encoding="utf-8")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "gtt" in row)
    result = _vipflow("check", rules)
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"{path}:{line}: rule 'large-withdrawal': unknown operator 'gtt' "
        "(expected one of eq, ne, gt, gte, lt, lte, in, not_in, exists, in_list, not_in_list)"
    )


def test_test_prints_each_failure_with_expected_and_actual(tmp_path: Path) -> None:
    """A failing case is printed with expected and actual outcome and matched rules; exit 1."""
    rules = _copy_default(tmp_path)
    path = rules / "withdraw_test.yaml"
    text = path.read_text(encoding="utf-8")
    broken = text.replace("expect: {outcome: review, matched: [large-withdrawal]}\n",
                          "expect: {outcome: approve, matched: [standard-withdrawal]}\n", 1)
    assert broken != text
    path.write_text(broken, encoding="utf-8")
    result = _vipflow("test", rules)
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL " in out and "withdraw_test.yaml:" in out
    assert "  expected: approve  matched [standard-withdrawal]" in out
    assert "  actual:   review  matched [large-withdrawal]" in out
    passed, failed = out.strip().splitlines()[-1].split(", ")
    assert int(passed.split()[0]) >= 40 and failed == "1 failed"


def _write_facts(tmp_path: Path) -> Path:
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({
        "amount": 80.5, "product_type": "preferred", "fund_transfer_type": "ACH",
        "account": {"found": True, "is_in_good_standing": True}, "wallet": {"balance": 50},
        "limits": {"min_withdraw": 10, "max_withdraw": 999999.99},
    }), encoding="utf-8")
    return facts


def test_explain_shows_the_first_failing_condition_with_the_actual_value(tmp_path: Path) -> None:
    """`rules explain` shows each unmatched rule's first failing condition, its line and the actual value."""
    result = _vipflow("explain", "withdraw", _write_facts(tmp_path), "--rules", "rules/default")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    standard = lines.index("  no    large-withdrawal -> review")
    assert lines[standard + 1].strip().endswith("amount gt 2500; amount = 80.50")
    assert "  MATCH exceeds-wallet-balance -> reject" in lines
    assert lines[-1] == "outcome: reject (most severe of exceeds-wallet-balance, standard-withdrawal)"


def test_explain_json_parses_and_carries_the_decision(tmp_path: Path) -> None:
    """`rules explain --json` prints JSON with every rule and the decision."""
    result = _vipflow("explain", "withdraw", _write_facts(tmp_path), "--rules", "rules/default", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["decision"]["outcome"] == "reject"
    by_id = {r["id"]: r for r in data["rules"]}
    assert by_id["large-withdrawal"]["failed"]["actual"] == "amount = 80.50"
    assert by_id["exceeds-wallet-balance"] == {"id": "exceeds-wallet-balance", "outcome": "reject",
                                               "matched": True, "failed": None}
