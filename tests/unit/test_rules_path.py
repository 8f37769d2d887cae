"""The default rules path does not depend on the working directory: resolved beside the configuration file,
else the rule set shipped inside the package, and the commands say which they use."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from worker.config import load_settings
from worker.rule_paths import DEFAULT_RULES, SHIPPED_RULES, resolve_rule_path

SHIPPED_LINE = f"rules: {SHIPPED_RULES} (the rules shipped with vipflow)"


def _vipflow(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producers", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def _rules_beside(config_dir: Path, name: str) -> Path:
    target = config_dir / name
    shutil.copytree(SHIPPED_RULES, target)
    return target


def test_the_shipped_rules_are_package_data() -> None:
    """The rules package carries its default rule set (pyproject's package-data ships it in the wheel)."""
    assert {p.name for p in SHIPPED_RULES.glob("*.yaml")} >= {"deposit.yaml", "withdraw.yaml"}
    assert 'rules = ["default/*.yaml"' in (ROOT / "pyproject.toml").read_text()


def test_rules_check_from_another_directory_uses_the_shipped_rules(tmp_path: Path) -> None:
    """With no configuration file, `vipflow rules check` run elsewhere checks the shipped rules and says so."""
    result = _vipflow(tmp_path, "rules", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == SHIPPED_LINE


def test_a_relative_rules_path_in_the_file_is_relative_to_the_file(tmp_path: Path) -> None:
    """rules.path: my-rules in /x/conf/vipflow.yaml means /x/conf/my-rules, whatever the working directory."""
    conf = tmp_path / "conf"
    conf.mkdir()
    mine = _rules_beside(conf, "my-rules")
    (conf / "vipflow.yaml").write_text("rules: {path: my-rules}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _vipflow(elsewhere, "--config", "../conf/vipflow.yaml", "rules", "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == f"rules: {mine}"


def test_the_default_path_beside_the_file_wins_over_the_shipped_rules(tmp_path: Path) -> None:
    """A file that leaves rules.path unset uses rules/default beside it when that exists, else the shipped set."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "vipflow.yaml").write_text("log: {level: INFO}\n")
    assert load_settings(conf / "vipflow.yaml").rules.path == SHIPPED_RULES
    beside = _rules_beside(conf, "rules/default")
    assert load_settings(conf / "vipflow.yaml").rules.path == beside


def test_a_relative_path_from_the_environment_is_relative_to_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VIPFLOW_RULES__PATH is typed in a shell: relative to where the command runs, even with a file."""
    (tmp_path / "c.yaml").write_text("rules: {path: ignored}\n")
    monkeypatch.setenv("VIPFLOW_RULES__PATH", "here-rules")
    monkeypatch.chdir(ROOT)
    assert load_settings(tmp_path / "c.yaml").rules.path == ROOT / "here-rules"


def test_a_missing_configured_path_is_kept_for_the_command_to_name(tmp_path: Path) -> None:
    """Only the default falls back to the shipped rules; a configured path that does not exist stays as is."""
    assert resolve_rule_path(Path("nowhere"), tmp_path / "c.yaml", {}, "VIPFLOW_RULES__PATH") == tmp_path / "nowhere"
    assert resolve_rule_path(DEFAULT_RULES, tmp_path / "c.yaml", {}, "VIPFLOW_RULES__PATH") == SHIPPED_RULES
    assert resolve_rule_path(Path("/abs/rules"), None, {}, "VIPFLOW_RULES__PATH") == Path("/abs/rules")


def test_the_shadow_path_is_resolved_like_the_live_one(tmp_path: Path) -> None:
    """rules.shadow: candidate in the file is the candidate directory beside the file."""
    (tmp_path / "c.yaml").write_text("rules: {shadow: candidate}\n")
    assert load_settings(tmp_path / "c.yaml").rules.shadow == tmp_path / "candidate"
