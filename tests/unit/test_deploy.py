"""deploy/: the systemd units pass ``systemd-analyze verify``; the Prometheus alerting rules pass
``promtool check rules`` and their own ``promtool test rules`` cases, and name only metrics vipflow exports.

Where a tool is missing the test is skipped saying so, except under CI (``CI`` set), where it fails:
``.ci/run`` installs both (Debian's ``prometheus`` and ``systemd`` packages).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import producers.ingest.metrics  # noqa: F401 - registers the ingestor's counters
import worker.metrics
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").iterdir())
ALERTS = DEPLOY / "prometheus" / "vipflow-alerts.yml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed here; .ci/run installs it (Debian: apt-get install " \
                  f"{'prometheus' if name == 'promtool' else 'systemd'})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_the_alerting_rules_load_and_pass_their_tests() -> None:
    """promtool check rules finds every rule valid; promtool test rules passes every case."""
    promtool = _tool("promtool")
    checked = _run(promtool, "check", "rules", str(ALERTS))
    assert checked.returncode == 0 and "SUCCESS: 9 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = _run(promtool, "test", "rules", "vipflow-alerts_test.yml", cwd=ALERTS.parent)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_alert_has_a_test_case_and_names_only_metrics_that_exist() -> None:
    """Each alert is exercised by a case, and each vipflow_* name in its expression is exported by the
    worker (a counter, or a gauge of the scrape-time collector) or the ingestor."""
    exported = set(worker.metrics._GAUGES)
    for family in REGISTRY.collect():
        exported |= {family.name, f"{family.name}_total", f"{family.name}_count", f"{family.name}_bucket"}
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load((ALERTS.parent / "vipflow-alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")}
    assert {r["alert"] for r in rules} == tested
    for rule in rules:
        for name in re.findall(r"\bvipflow_\w+", rule["expr"]):
            assert name in exported, f"{rule['alert']}: {name} is not a metric vipflow exports"


def _root(tmp_path: Path, units: list[Path]) -> Path:
    """A file-system root for ``systemd-analyze verify --root``: the host's unit tree, the units, and the
    vipflow console script where the units expect it (/opt/vipflow/venv/bin/vipflow)."""
    root = tmp_path / "root"
    system = Path("/usr/lib/systemd/system")
    if not system.is_dir():
        pytest.skip("no /usr/lib/systemd/system here to verify against")
    shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    venv_bin = root / "opt/vipflow/venv/bin"
    venv_bin.mkdir(parents=True)
    shutil.copy(ROOT / ".venv/bin/vipflow", venv_bin / "vipflow")
    return root


def _verify(root: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    return _run(_tool("systemd-analyze"), "verify", f"--root={root}", "--man=no", *names)


def test_the_systemd_units_verify_clean(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the ingestor, worker (an instance: its metrics port), web and target
    units without a single warning."""
    _tool("systemd-analyze")
    root = _root(tmp_path, UNITS)
    names = ["vipflow-ingest.service", "vipflow-worker@9108.service", "vipflow-web.service", "vipflow.target"]
    assert {u.name for u in UNITS} == {"vipflow-ingest.service", "vipflow-worker@.service", "vipflow-web.service",
                                      "vipflow.target"}
    done = _verify(root, names)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def test_a_unit_with_a_mistake_is_caught(tmp_path: Path) -> None:
    """The check is real: a misspelt directive and an ExecStart that is not there are both reported."""
    _tool("systemd-analyze")
    broken = tmp_path / "vipflow-ingest.service"
    text = (DEPLOY / "systemd" / "vipflow-ingest.service").read_text()
    broken.write_text(text.replace("Type=exec", "Type=exce")
                      .replace("/opt/vipflow/venv/bin/vipflow", "/opt/vipflow/venv/bin/vipflowx"))
    done = _verify(_root(tmp_path, [broken]), ["vipflow-ingest.service"])
    out = done.stdout + done.stderr
    assert "Failed to parse service type" in out and "vipflowx" in out


def test_the_worker_unit_restarts_on_failure_but_not_on_bad_configuration() -> None:
    """Exit 1 (Redis lost past worker.broker_connect_timeout_s) restarts; exit 2 (bad configuration) does not;
    SIGTERM gives running tasks worker.task_time_limit_s to finish."""
    text = (DEPLOY / "systemd" / "vipflow-worker@.service").read_text()
    assert "Restart=on-failure" in text and "RestartPreventExitStatus=2" in text
    assert "Environment=VIPFLOW_WORKER__METRICS_PORT=%i" in text
    limit = int(re.search(r"TimeoutStopSec=(\d+)", text).group(1))  # type: ignore[union-attr]
    from worker.config import WorkerSettings

    assert limit > WorkerSettings().task_time_limit_s
