"""`--verbose` is one flag, before or after any subcommand, and says which configuration, Redis and database,
ledger and rules a command uses, passwords hidden."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from producers.cli import build_parser
from tests.conftest import ROOT
from worker.rule_paths import SHIPPED_RULES


@pytest.mark.parametrize("argv", [
    ["-v", "review", "list"], ["--verbose", "tx", "show", "x"], ["review", "list", "--verbose"],
    ["review", "approve", "x", "-v"], ["worker", "--verbose"], ["db", "status", "-v"], ["rules", "check", "-v"],
])
def test_the_flag_is_accepted_before_and_after_the_subcommand(argv: list[str]) -> None:
    """Every spelling and place of the flag sets the same ``verbose``."""
    assert build_parser().parse_args(argv).verbose is True


def test_without_the_flag_nothing_is_verbose() -> None:
    """Not given anywhere: False, also when a subcommand is nested."""
    assert build_parser().parse_args(["review", "list"]).verbose is False


def test_every_subcommand_takes_the_flag() -> None:
    """No command was left without it (the parser tree is walked, nested actions included)."""
    import argparse

    def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    assert "--verbose" in child._option_string_actions, " ".join((*path, name))
                    found += leaves(child, (*path, name)) or [(*path, name)]
        return found

    assert len(leaves(build_parser(), ())) >= 10


def test_verbose_names_the_redis_database_and_ledger_without_passwords(tmp_path: Path) -> None:
    """`vipflow db status --verbose`: one line each for the file, Redis (database number, key prefix), the
    ledger and the rules, with where each came from; the Redis password is shown as ***."""
    config = tmp_path / "vipflow.yaml"
    config.write_text("redis: {key_prefix: mine}\n")
    (tmp_path / "ledger.db").touch()  # db status reads a ledger; it creates none
    env = {**os.environ, "VIPFLOW_REDIS__URL": "redis://:hunter2@127.0.0.1:6379/11",
           "VIPFLOW_DATABASE__URL": f"sqlite:///{tmp_path / 'ledger.db'}"}
    proc = subprocess.run([sys.executable, "-m", "producers", "--config", str(config), "db", "status", "--verbose"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.startswith("vipflow: ")]
    assert said[:5] == [
        f"vipflow: configuration: {config}",
        "vipflow: redis: redis://:***@127.0.0.1:6379/11 (database 11, key prefix 'mine'), from VIPFLOW_REDIS__URL",
        f"vipflow: ledger: sqlite:///{tmp_path / 'ledger.db'}, from VIPFLOW_DATABASE__URL",
        f"vipflow: rules: {SHIPPED_RULES} (the rules shipped with vipflow), default",
        "vipflow: environment: VIPFLOW_DATABASE__URL, VIPFLOW_REDIS__URL (values not shown)",
    ]
    assert "hunter2" not in proc.stderr + proc.stdout


def test_a_relative_sqlite_ledger_is_also_named_by_its_absolute_file(tmp_path: Path) -> None:
    """The default sqlite:///var/vipflow.db is relative to the working directory: verbose says which file."""
    from worker.config import DatabaseSettings, Settings
    from worker.config_report import ledger_summary

    settings = Settings(database=DatabaseSettings(url="sqlite:///var/vipflow.db"))
    assert ledger_summary(settings) == f"sqlite:///var/vipflow.db (the file {Path.cwd() / 'var' / 'vipflow.db'})"
