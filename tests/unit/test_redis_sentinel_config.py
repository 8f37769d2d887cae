"""Redis Sentinel settings: parsed and checked at load, and every client and the broker built from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.sentinel import SentinelConnectionPool

from worker.celery_app import create_celery
from worker.config import RedisSettings, Settings, load_settings
from worker.config_report import redis_summary
from worker.errors import ConfigError
from worker.masking import operator_hosts
from worker.store.connection import broker_options, broker_url, connect, where

SENTINELS = ["10.0.0.5:26379", "10.0.0.6:26380", "[fd00::7]:26379"]


def test_sentinels_from_the_environment_as_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """VIPFLOW_REDIS__SENTINELS takes HOST:PORT,HOST:PORT (spaces ignored); the addresses come out as pairs."""
    monkeypatch.setenv("VIPFLOW_REDIS__SENTINELS", " 10.0.0.5:26379, [fd00::7]:26379 ")
    monkeypatch.setenv("VIPFLOW_REDIS__MASTER_NAME", "payments")
    redis = load_settings(None).redis
    assert redis.sentinels == ["10.0.0.5:26379", "[fd00::7]:26379"]
    assert redis.sentinel_addresses() == [("10.0.0.5", 26379), ("fd00::7", 26379)]
    assert redis.master_name == "payments"


def test_sentinels_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON list is read too."""
    monkeypatch.setenv("VIPFLOW_REDIS__SENTINELS", '["a.example:26379", "b.example:26379"]')
    assert load_settings(None).redis.sentinel_addresses() == [("a.example", 26379), ("b.example", 26379)]


@pytest.mark.parametrize(("entry", "problem"), [
    ("10.0.0.5", "no host or no port"),
    ("10.0.0.5:0", "port is not a number from 1 to 65535"),
    ("10.0.0.5:port", "port is not a number"),
    ("fd00::7:26379", "IPv6 address must be in brackets"),
    ("redis://10.0.0.5:26379", "not HOST:PORT"),
])
def test_a_bad_sentinel_is_refused_naming_the_key(tmp_path: Path, entry: str, problem: str) -> None:
    """A sentinel that is not HOST:PORT stops loading with redis.sentinels.N and what is wrong."""
    file = tmp_path / "c.yaml"
    file.write_text(f'redis: {{sentinels: ["10.0.0.1:26379", "{entry}"]}}\n')
    with pytest.raises(ConfigError) as err:
        load_settings(file)
    assert "redis.sentinels.1" in str(err.value) and problem in str(err.value)


def test_the_sentinel_password_is_a_secret_never_read_from_the_file(tmp_path: Path) -> None:
    """redis.sentinel_password in the YAML is refused like every secret, naming its variable."""
    file = tmp_path / "c.yaml"
    file.write_text("redis: {sentinel_password: hunter2hunter2}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(file)
    assert "VIPFLOW_REDIS__SENTINEL_PASSWORD" in str(err.value) and "hunter2" not in str(err.value)


def test_replica_acks_default_to_one_with_sentinels_and_zero_without() -> None:
    """Without an explicit replica_acks, the ingestor waits for one replica only when there are sentinels."""
    assert RedisSettings().wanted_replica_acks() == 0
    assert RedisSettings(sentinels=SENTINELS).wanted_replica_acks() == 1
    assert RedisSettings(sentinels=SENTINELS, replica_acks=0).wanted_replica_acks() == 0
    assert RedisSettings(replica_acks=2).wanted_replica_acks() == 2


def test_the_broker_url_lists_every_sentinel_with_the_database_and_password() -> None:
    """Celery gets kombu's sentinel:// form, one entry per sentinel, and the master's name as an option."""
    redis = RedisSettings(url="redis://:p%40ss@ignored:6379/3", sentinels=SENTINELS[:2], master_name="payments",
                          sentinel_password="s3ntinel")  # type: ignore[arg-type]  # pydantic makes it a SecretStr
    assert broker_url(redis) == "sentinel://:p%40ss@10.0.0.5:26379/3;sentinel://:p%40ss@10.0.0.6:26380/3"
    options = broker_options(redis)
    assert options["master_name"] == "payments"
    assert options["sentinel_kwargs"]["password"] == "s3ntinel"
    assert broker_url(RedisSettings(url="redis://h:1/2")) == "redis://h:1/2" and broker_options(RedisSettings()) == {}


def test_celery_uses_the_sentinel_transport_with_the_money_safe_options() -> None:
    """create_celery keeps the visibility timeout and adds master_name; kombu resolves the transport class."""
    app = create_celery(Settings(redis=RedisSettings(sentinels=SENTINELS[:1], master_name="payments")))
    assert app.conf.broker_url.startswith("sentinel://10.0.0.5:26379/0")
    options = app.conf.broker_transport_options
    assert options["master_name"] == "payments" and options["visibility_timeout"] == 3600
    transport = app.connection_for_write().transport_cls
    assert str(transport).endswith(":SentinelTransport")
    from kombu.transport import resolve_transport

    assert resolve_transport(transport).Channel.__name__ == "SentinelChannel"


def test_every_client_is_a_sentinel_managed_master_client() -> None:
    """connect() with sentinels gives a client on a Sentinel pool for the master, database and password of
    redis.url (it connects on first use: no network here)."""
    client = connect(RedisSettings(url="redis://user:p%40w@ignored/5", sentinels=SENTINELS, master_name="payments"))
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "payments" and pool.is_master
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (5, "user", "p@w")
    assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels] == [26379, 26380,
                                                                                                     26379]


def test_a_unix_socket_url_with_sentinels_is_refused() -> None:
    """With sentinels, redis.url must be redis:// (it only carries the database and the password)."""
    with pytest.raises(ConfigError) as err:
        connect(RedisSettings(url="unix:///tmp/r.sock", sentinels=SENTINELS))
    assert "redis.url" in str(err.value)


def test_what_people_are_shown_names_the_master_and_sentinels_never_the_password() -> None:
    """where() and the start-up summary name the master and the sentinels; the URL's password stays hidden."""
    settings = Settings(redis=RedisSettings(url="redis://:secretpw@x/2", sentinels=SENTINELS[:2],
                                            master_name="payments"))
    for shown in (where(settings.redis), redis_summary(settings)):
        assert "master 'payments' via sentinels 10.0.0.5:26379, 10.0.0.6:26380 (database 2" in shown
        assert "secretpw" not in shown


def test_sentinel_hosts_are_the_operators_own() -> None:
    """The sentinels' addresses are kept in clear in messages, like redis.url's host."""
    assert {"10.0.0.5", "fd00::7"} <= operator_hosts(Settings(redis=RedisSettings(sentinels=SENTINELS)))


def test_the_demo_refuses_sentinels_before_touching_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """vipflow run starts and empties a Redis of its own: with redis.sentinels it stops first, exit 2, naming
    the key, and its folder keeps what was there."""
    from producers.cli import main

    monkeypatch.setenv("VIPFLOW_REDIS__SENTINELS", "127.0.0.1:26379")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "worker.log").write_text("earlier run\n")
    assert main(["run", "--var", str(tmp_path)]) == 2
    assert "redis.sentinels" in capsys.readouterr().err
    assert (tmp_path / "logs" / "worker.log").read_text() == "earlier run\n"
    assert not (tmp_path / "run.lock").exists()
