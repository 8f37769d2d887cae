"""vipflow's configuration: one typed settings object.

Loaded from the YAML file at ``--config`` or ``$VIPFLOW_CONFIG`` (absent: the
defaults), every key overridable by ``VIPFLOW_<SECTION>__<KEY>``. Secrets (the
VIP secret keys, the callback key, the wallet token) come only from the
environment or from a file named there (``..._FILE``); a secret written into
the YAML is refused. ``config.example.yaml`` documents every key.
"""

from __future__ import annotations

import base64
import binascii
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from worker.errors import ConfigError

ENV_PREFIX = "VIPFLOW_"
CONFIG_ENV = "VIPFLOW_CONFIG"

# Keys that hold secrets: never read from the YAML file.
SECRET_KEYS = {
    ("vip", "secret_key1"),
    ("vip", "secret_key2"),
    ("ingest", "auth", "callback_key"),
    ("wallet", "token"),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _read_secret(value: SecretStr | None, path: Path | None, key: str) -> SecretStr | None:
    if value is not None:
        return value
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read the secret file named by {key}_file ({exc.strerror})") from None
    return SecretStr(text)


def _check_base64_key(value: SecretStr | None, key: str) -> None:
    if value is None:
        return
    try:
        raw = base64.b64decode(value.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{key} is not valid base64 (the value is not shown)") from None
    if len(raw) < 16:
        raise ValueError(f"{key} decodes to {len(raw)} bytes; expected at least 16")


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "vipflow"


class VipSettings(_Section):
    base_url: str = "http://127.0.0.1:8090"
    operator_id: str = ""
    audience: str = "vip-api"
    token_ttl_s: int = Field(600, ge=30, le=3600)
    timeout_s: float = Field(10.0, gt=0)
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)  # also the longest Retry-After honoured
    inquiry_max_attempts: int = Field(4, ge=1, le=20)  # account inquiry: asked again on 5xx/timeouts/resets
    account_cache_ttl_s: int = Field(300, ge=0)
    deposit_approval_path: str = "/api/operator/DepositApproval"
    withdraw_approval_path: str = "/api/operator/WithdrawApproval"
    transaction_path: str = "/api/operator/Transaction"
    account_lookup_path: str = "/api/patronsession/accountlookup"
    secret_key1: SecretStr | None = None
    secret_key2: SecretStr | None = None
    secret_key1_file: Path | None = None
    secret_key2_file: Path | None = None

    @model_validator(mode="after")
    def _secrets(self) -> VipSettings:
        k1 = _read_secret(self.secret_key1, self.secret_key1_file, "secret_key1")
        k2 = _read_secret(self.secret_key2, self.secret_key2_file, "secret_key2")
        _check_base64_key(k1, "secret_key1")
        _check_base64_key(k2, "secret_key2")
        object.__setattr__(self, "secret_key1", k1)
        object.__setattr__(self, "secret_key2", k2)
        return self

    def signing_keys(self) -> list[bytes]:
        """The decoded secret keys, SecretKey1 first (it signs outgoing calls)."""
        return [
            base64.b64decode(k.get_secret_value())
            for k in (self.secret_key1, self.secret_key2)
            if k is not None
        ]


class IngestAuthSettings(_Section):
    mode: Literal["jwt", "none"] = "jwt"
    allow_unauthenticated: bool = False
    issuer: str = ""
    audience: str = "vip-api"
    leeway_s: int = Field(60, ge=0, le=3600)
    max_token_lifetime_s: int = Field(3600, ge=60, le=86_400)  # exp - iat (or nbf); VIP advises <= 1 h
    callback_key: SecretStr | None = None
    callback_key_file: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> IngestAuthSettings:
        if self.mode == "none" and not self.allow_unauthenticated:
            raise ValueError("mode 'none' also needs allow_unauthenticated: true")
        key = _read_secret(self.callback_key, self.callback_key_file, "callback_key")
        _check_base64_key(key, "callback_key")
        object.__setattr__(self, "callback_key", key)
        return self


class IngestPaths(_Section):
    deposit: str = "/vip/notify/deposit"
    withdraw: str = "/vip/notify/withdraw"
    error: str = "/vip/notify/error"


class IngestSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(65536, ge=1024)
    paths: IngestPaths = IngestPaths()
    auth: IngestAuthSettings = IngestAuthSettings()


class RulesSettings(_Section):
    path: Path = Path("rules/default")
    shadow: Path | None = None
    reload_interval_s: float = Field(5.0, gt=0)


class LimitsSettings(_Section):
    min_deposit: Decimal = Decimal("10.00")
    max_deposit: Decimal = Decimal("99999.99")
    min_withdraw: Decimal = Decimal("10.00")
    max_withdraw: Decimal = Decimal("999999.99")


class WalletSettings(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    adapter: Literal["http", "python"] = "http"
    url: str = "http://127.0.0.1:8091"
    class_: str | None = Field(None, alias="class")
    timeout_s: float = Field(5.0, gt=0)
    token: SecretStr | None = None
    token_file: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> WalletSettings:
        if self.adapter == "python" and not self.class_:
            raise ValueError("adapter 'python' needs class: an import path like 'mypkg.wallet:Wallet'")
        object.__setattr__(self, "token", _read_secret(self.token, self.token_file, "token"))
        return self


class WorkerSettings(_Section):
    pool: Literal["threads", "prefork", "gevent", "solo"] = "threads"
    concurrency: int = Field(16, ge=1, le=512)
    metrics_port: int = Field(9108, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    queue: str = "vipflow"
    max_deliveries: int = Field(5, ge=1)  # deliveries that kill their worker (the task's own retries apart)
    max_retries: int = Field(20, ge=0, le=1000)  # the task's own retries; waits 1, 2, 4 ... 30 s: ~8 min in all
    task_time_limit_s: int = Field(300, ge=10)
    visibility_timeout_s: int = Field(3600, ge=60)
    lock_ttl_s: int = Field(120, ge=5)


class DatabaseSettings(_Section):
    # The ledger. Relative SQLite paths are relative to the working directory.
    url: str = "sqlite:///var/vipflow.db"

    @model_validator(mode="after")
    def _check(self) -> DatabaseSettings:
        if not self.url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DATABASE")
        path = self.url.removeprefix("sqlite:///") if self.url.startswith("sqlite:") else None
        if path is not None and (not path.strip() or path.startswith(":memory:") or "mode=memory" in path):
            raise ValueError("an in-memory SQLite ledger keeps nothing and no two processes share it; "
                             "name a file: sqlite:///PATH")
        return self


class LedgerSettings(_Section):
    dedupe_window_s: int = Field(7 * 86_400, ge=60)  # Redis forgets a final transaction after this
    retention_days: int = Field(2555, ge=1)  # seven years; `vipflow db prune` deletes what is older
    actor: str | None = None  # who the CLI records for human actions; default: the operating-system user
    drain_interval_s: float = Field(5.0, gt=0)  # how often a worker moves the intake buffer into the ledger


class ReviewSettings(_Section):
    max_age_s: int = Field(3600, ge=1)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class _YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]):
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


class Settings(BaseSettings):
    """Everything vipflow reads from its configuration, typed and checked."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    redis: RedisSettings = RedisSettings()
    vip: VipSettings = VipSettings()
    ingest: IngestSettings = IngestSettings()
    rules: RulesSettings = RulesSettings()
    limits: LimitsSettings = LimitsSettings()
    wallet: WalletSettings = WalletSettings()
    worker: WorkerSettings = WorkerSettings()
    database: DatabaseSettings = DatabaseSettings()
    ledger: LedgerSettings = LedgerSettings()
    review: ReviewSettings = ReviewSettings()
    log: LogSettings = LogSettings()

    _yaml_data: dict[str, Any] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first, then the YAML file (passed through init), then defaults.
        return env_settings, init_settings


def _find_secrets(data: Any, path: tuple[str, ...] = ()) -> list[str]:
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            here = (*path, str(key))
            if here in SECRET_KEYS and value not in (None, ""):
                found.append(".".join(here))
            found.extend(_find_secrets(value, here))
    return found


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The configuration file to read: ``--config``, else ``$VIPFLOW_CONFIG``, else none."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else None


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and check the configuration; raise ConfigError naming the first bad key."""
    file = config_path(path)
    data: dict[str, Any] = {}
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(str(file), f"cannot read the configuration file ({exc.strerror})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(str(file), f"not valid YAML{where}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(str(file), "the top level must be a mapping of sections")
        data = loaded
    secrets = _find_secrets(data)
    if secrets:
        key = secrets[0]
        env = ENV_PREFIX + key.upper().replace(".", "__")
        raise ConfigError(key, f"secrets are never read from the config file; set {env} or {env}_FILE")
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise _config_error(exc) from None


def _config_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key (see config.example.yaml for the keys there are)"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(key, msg)
