"""Configuration layers merge key by key (code > environment > YAML > defaults); stray VIPFLOW_* variables
are warned about; malformed URLs and ports are refused naming their key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from worker import envvars
from worker.config import (
    IngestAuthSettings,
    IngestSettings,
    RedisSettings,
    Settings,
    VipSettings,
    WalletSettings,
    WorkerSettings,
    load_settings,
)
from worker.errors import ConfigError

KEY = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which variables this process was already warned about."""
    monkeypatch.setattr(envvars, "_warned", set())


def test_a_section_passed_in_code_keeps_the_keys_it_sets_over_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """VIPFLOW_REDIS__URL replaces neither the URL nor the key prefix a test passes in code."""
    monkeypatch.setenv("VIPFLOW_REDIS__URL", "redis://127.0.0.1:1/0")
    settings = Settings(redis=RedisSettings(url="redis://127.0.0.1:6379/11", key_prefix="t"))
    assert (settings.redis.url, settings.redis.key_prefix) == ("redis://127.0.0.1:6379/11", "t")


def test_keys_a_section_in_code_leaves_unset_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A section in code is merged key by key, as a YAML section is: unset keys come from the layers below."""
    monkeypatch.setenv("VIPFLOW_REDIS__URL", "redis://127.0.0.1:6380/2")
    monkeypatch.setenv("VIPFLOW_INGEST__PORT", "9000")
    monkeypatch.setenv("VIPFLOW_INGEST__AUTH__ISSUER", "op-env")
    settings = Settings(redis=RedisSettings(key_prefix="t"),
                        ingest=IngestSettings(auth=IngestAuthSettings(leeway_s=5)))
    assert (settings.redis.url, settings.redis.key_prefix) == ("redis://127.0.0.1:6380/2", "t")
    assert (settings.ingest.port, settings.ingest.auth.issuer, settings.ingest.auth.leeway_s) == (9000, "op-env", 5)


def test_a_secret_file_and_an_alias_passed_in_code_still_work(tmp_path: Path) -> None:
    """Sections re-read from code keep their validators (secret files) and aliases (wallet.class)."""
    secret = tmp_path / "k1"
    secret.write_text(KEY)
    settings = Settings(vip=VipSettings(secret_key1_file=secret),
                        wallet=WalletSettings(adapter="python", **{"class": "pkg.mod:Wallet"}))
    assert settings.vip.signing_keys()[0].startswith(b"secret")
    assert settings.wallet.class_ == "pkg.mod:Wallet"


def test_a_mistyped_variable_is_a_warning_naming_the_nearest_setting(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fresh_warnings: None) -> None:
    """VIPFLOW_REDIS_URL (one underscore) is warned about once, naming VIPFLOW_REDIS__URL."""
    monkeypatch.setenv("VIPFLOW_REDIS_URL", "redis://elsewhere:6379/0")
    load_settings(None)
    load_settings(None)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "VIPFLOW_REDIS_URL" in lines[0] and "did you mean VIPFLOW_REDIS__URL?" in lines[0]
    assert "elsewhere" not in lines[0]


def test_a_variable_far_from_any_setting_points_at_the_example(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fresh_warnings: None) -> None:
    """A VIPFLOW_ variable like no setting is still a warning, pointing at config.example.yaml."""
    monkeypatch.setenv("VIPFLOW_ZZZ", "1")
    load_settings(None)
    assert "VIPFLOW_ZZZ matches no setting" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["VIPFLOW_REDIS__URLL", "VIPFLOW_NOPE__URL", "VIPFLOW_REDIS__URL__X",
                                  "vipflow_log__levle"])
def test_a_variable_naming_no_key_is_a_warning_whatever_its_shape_never_an_error(
        name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        fresh_warnings: None) -> None:
    """VIPFLOW_REDIS__URLL (two underscores, a key that is not there) is warned about in one line and
    ignored: no "redis.urll: unknown key", the settings load."""
    monkeypatch.setenv(name, "redis://elsewhere:6379/0")
    settings = load_settings(None)
    assert settings.redis.url == Settings().redis.url
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "matches no setting and is ignored" in lines[0]


def test_the_cli_with_a_mistyped_nested_variable_warns_once_and_succeeds(tmp_path: Path) -> None:
    """`VIPFLOW_REDIS__URLL=... vipflow rules check`: one warning line, exit 0."""
    env = {"PATH": "/usr/bin:/bin", "VIPFLOW_REDIS__URLL": "redis://127.0.0.1:1/0"}
    proc = subprocess.run([sys.executable, "-m", "producers", "rules", "check"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "vipflow: warning: VIPFLOW_REDIS__URLL matches no setting and is ignored; did you mean VIPFLOW_REDIS__URL?"]


@pytest.mark.parametrize(("name", "nearest"), [
    ("VIPFLOW_VIP__SECRET_KEY", "VIPFLOW_VIP__SECRET_KEY1"),  # the first of equally near keys
    ("VIPFLOW_REDIS_URL", "VIPFLOW_REDIS__URL"),
    ("VIPFLOW_FOO", None),  # nothing near; never a section (VIPFLOW_LOG) as if it were a key
    ("VIPFLOW_ZZZ", None),
])
def test_the_suggestion_is_the_first_nearest_whole_key_or_none(name: str, nearest: str | None) -> None:
    """Suggestions name whole keys only, the first of equally near ones, and nothing when none is near."""
    assert envvars.unknown_variables(Settings, {name: "x"}) == [(name, nearest)]


def test_an_entry_of_a_table_setting_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """VIPFLOW_REDIRECTS__DEPOSIT__APPROVED sets one entry of the redirects.deposit table: not warned about."""
    assert envvars.unknown_variables(Settings, {"VIPFLOW_REDIRECTS__DEPOSIT__APPROVED": "/x"}) == []
    monkeypatch.setenv("VIPFLOW_REDIRECTS__DEPOSIT__APPROVED", "/x")
    assert load_settings(None).redirects.deposit == {"approved": "/x"}


@pytest.mark.parametrize("name", [
    "VIPFLOW_REDIS__URL", "vipflow_redis__key_prefix", "VIPFLOW_REDIS", "VIPFLOW_INGEST__AUTH__LEEWAY_S",
    "VIPFLOW_VIP__SECRET_KEY1_FILE", "VIPFLOW_WALLET__CLASS", "VIPFLOW_CONFIG", "VIPFLOW_TEST_ANYTHING",
    "VIPFLOW_BENCH_REDIS_URL",
])
def test_settings_and_the_suites_own_variables_are_not_warned_about(name: str) -> None:
    """Every setting's variable (any case, a section as JSON) and VIPFLOW_CONFIG/_TEST_/_BENCH_ are known."""
    assert envvars.unknown_variables(Settings, {name: "x"}) == []


def test_the_cli_warns_in_one_line_and_carries_on(tmp_path: Path) -> None:
    """`vipflow rules check` with VIPFLOW_REDIS_URL set prints one warning line on stderr and still succeeds."""
    env = {"PATH": "/usr/bin:/bin", "VIPFLOW_REDIS_URL": "redis://127.0.0.1:1/0"}
    proc = subprocess.run([sys.executable, "-m", "producers", "rules", "check"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "vipflow: warning: VIPFLOW_REDIS_URL matches no setting and is ignored; did you mean VIPFLOW_REDIS__URL?"]


@pytest.mark.parametrize(("yaml_text", "key"), [
    ("redis: {url: 'localhost:6379'}\n", "redis.url"),
    ("redis: {url: 'redis://127.0.0.1:63a9/0'}\n", "redis.url"),
    ("redis: {url: 'redis://127.0.0.1:6379/zero'}\n", "redis.url"),
    ("redis: {url: 'redis://127.0.0.1:99999/0'}\n", "redis.url"),
    ("database: {url: 'postgresql+psycopg://u@db:54x2/v'}\n", "database.url"),
    ("database: {url: 'mysql://u@db/v'}\n", "database.url"),
    ("vip: {base_url: '127.0.0.1:8090'}\n", "vip.base_url"),
    ("vip: {base_url: 'http:///nohost'}\n", "vip.base_url"),
    ("vip: {base_url: 'http://vip.example .com'}\n", "vip.base_url"),
    ("vip: {transaction_path: 'api/operator/Transaction'}\n", "vip.transaction_path"),
    ("wallet: {url: 'ftp://wallet:21'}\n", "wallet.url"),
    ("ingest: {paths: {deposit: 'vip/notify/deposit'}}\n", "ingest.paths.deposit"),
    ("worker: {metrics_port: true}\n", "worker.metrics_port"),
    ("worker: {metrics_port: 70000}\n", "worker.metrics_port"),
])
def test_a_malformed_url_is_refused_at_load_naming_its_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    """Each malformed URL, path or port stops loading with one line naming its key."""
    file = tmp_path / "c.yaml"
    file.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(file)
    assert str(err.value).startswith(f"configuration: {key}: ") and "\n" not in str(err.value)


def test_a_malformed_url_from_the_environment_is_refused_without_its_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal names the key and what is wrong, never the URL (it may hold a password)."""
    monkeypatch.setenv("VIPFLOW_REDIS__URL", "redis://:hunter2@127.0.0.1:port/0")
    with pytest.raises(ConfigError) as err:
        load_settings(None)
    assert "redis.url" in str(err.value) and "port" in str(err.value) and "hunter2" not in str(err.value)


@pytest.mark.parametrize(("section", "values"), [
    ("redis", {"url": "rediss://:pw@cache.internal:6380/3"}),
    ("redis", {"url": "unix:///run/redis.sock?db=2"}),
    ("redis", {"url": "redis://localhost"}),
    ("vip", {"base_url": "https://vip.example.com/connect/"}),
    ("database", {"url": "postgresql+psycopg://vipflow:pw@db.internal:5432/vipflow"}),
    ("database", {"url": "postgresql+psycopg:///vipflow?host=/run/postgresql"}),
])
def test_well_formed_urls_are_accepted(section: str, values: dict[str, str]) -> None:
    """TLS, sockets, passwords, default ports and base paths are all fine."""
    Settings(**{section: values})


@pytest.mark.parametrize(("value", "port"), [("off", None), ("OFF", None), ("null", None), ("0", 0), ("9200", 9200)])
def test_metrics_port_off_means_off_and_0_means_any_port(
        monkeypatch: pytest.MonkeyPatch, value: str, port: int | None) -> None:
    """worker.metrics_port: `off` (or null/false) turns metrics off; 0 asks for any free port, as --vip-port 0."""
    monkeypatch.setenv("VIPFLOW_WORKER__METRICS_PORT", value)
    assert load_settings(None).worker.metrics_port == port


def test_metrics_port_false_in_yaml_is_off(tmp_path: Path) -> None:
    """YAML reads `off` as false: both mean no metrics port."""
    file = tmp_path / "c.yaml"
    file.write_text("worker: {metrics_port: off}\n")
    assert load_settings(file).worker.metrics_port is None
    assert WorkerSettings(metrics_port=None).metrics_port is None


def test_importing_the_configuration_stays_cheap() -> None:
    """worker.config imports neither redis, celery nor sqlalchemy (`vipflow rules check` starts fast)."""
    code = ("import sys, worker.config; "
            "print(sorted(m for m in ('redis', 'celery', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
