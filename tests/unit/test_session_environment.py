"""The test session ignores the developer's VIPFLOW_* settings, in the test process and in its children."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from worker.config import RedisSettings, Settings, load_settings

CHILD = ("import os; print(sorted(k for k in os.environ if k.upper().startswith('VIPFLOW_') "
         "and not k.upper().startswith('VIPFLOW_TEST_')))")


def test_no_vipflow_setting_reaches_a_test_or_a_process_it_starts() -> None:
    """Only VIPFLOW_TEST_* variables are left, here and in a child process; settings are the defaults."""
    leaked = [k for k in os.environ if k.upper().startswith("VIPFLOW_") and not k.upper().startswith("VIPFLOW_TEST_")]
    assert leaked == []
    child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30, check=True)
    assert child.stdout.strip() == "[]"
    assert load_settings().redis == RedisSettings() == Settings().redis


def test_the_suite_passes_with_the_developers_settings_pointing_elsewhere(tmp_path: Path) -> None:
    """With VIPFLOW_REDIS__URL on a closed port, a key prefix, VIPFLOW_CONFIG and a mistyped variable set in
    the shell, an inner pytest session of the configuration tests and the check above passes, quietly."""
    env = {**os.environ,
           "VIPFLOW_REDIS__URL": "redis://127.0.0.1:1/0",
           "VIPFLOW_REDIS__KEY_PREFIX": "someone-elses",
           "vipflow_worker__queue": "lower-case-counts-too",
           "VIPFLOW_CONFIG": str(tmp_path / "missing.yaml"),
           "VIPFLOW_REDIS_URL": "redis://127.0.0.1:1/0"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{Path(__file__).relative_to(ROOT)}::test_no_vipflow_setting_reaches_a_test_or_a_process_it_starts",
         "tests/unit/test_config.py"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "warning" not in proc.stderr.lower()
