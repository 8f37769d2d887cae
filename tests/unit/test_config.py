"""Configuration: typed, layered (defaults < YAML < environment), secrets never from the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from worker.config import RulesSettings, Settings, load_settings
from worker.errors import ConfigError

KEY = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="


def test_example_config_documents_exactly_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.yaml loads and equals the built-in defaults (its rules/default resolved beside it)."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    example = load_settings(ROOT / "config.example.yaml")
    assert example == load_settings(None)
    assert example.rules.path == ROOT / "rules" / "default"
    assert example.model_copy(update={"rules": RulesSettings()}) == Settings()


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VIPFLOW_<SECTION>__<KEY> wins over the YAML, other YAML keys of the section stay."""
    file = tmp_path / "c.yaml"
    file.write_text("worker: {concurrency: 4, queue: q1}\n")
    monkeypatch.setenv("VIPFLOW_WORKER__CONCURRENCY", "8")
    settings = load_settings(file)
    assert (settings.worker.concurrency, settings.worker.queue) == (8, "q1")


def test_a_secret_in_the_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """A secret key written into the YAML stops loading; the message names the env variable, not the value."""
    file = tmp_path / "c.yaml"
    file.write_text(f"vip: {{secret_key1: {KEY}}}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(file)
    assert "VIPFLOW_VIP__SECRET_KEY1" in str(err.value) and KEY not in str(err.value)


def test_secret_from_a_file_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VIPFLOW_VIP__SECRET_KEY1_FILE names a file whose content is the key."""
    secret = tmp_path / "k1"
    secret.write_text(KEY + "\n")
    monkeypatch.setenv("VIPFLOW_VIP__SECRET_KEY1_FILE", str(secret))
    assert load_settings(None).vip.signing_keys()[0].startswith(b"secret")


def test_a_bad_base64_key_is_named_but_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret key that is not base64 is refused naming the key only."""
    monkeypatch.setenv("VIPFLOW_VIP__SECRET_KEY2", "not base64!!")
    with pytest.raises(ConfigError) as err:
        load_settings(None)
    assert "vip" in str(err.value) and "secret_key2" in str(err.value) and "not base64!!" not in str(err.value)


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("limits: {max_withdraw: lots}\n", "limits.max_withdraw"),
        ("worker: {pool: fibres}\n", "worker.pool"),
        ("ingest: {auth: {mode: none}}\n", "ingest.auth"),
        ("vip: {colour: blue}\n", "vip.colour"),
        ("- a list\n", "c.yaml"),
        ("vip: [unclosed\n", "c.yaml"),
    ],
)
def test_a_bad_value_names_its_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    """Each kind of bad configuration is one ConfigError whose message names the key."""
    file = tmp_path / "c.yaml"
    file.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(file)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_cli_exits_2_with_one_line_on_bad_configuration(tmp_path: Path) -> None:
    """`vipflow --config bad.yaml rules check` prints one line naming the key and exits 2."""
    file = tmp_path / "bad.yaml"
    file.write_text("limits: {min_deposit: ten}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "producers", "--config", str(file), "rules", "check"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "limits.min_deposit" in lines[0]
