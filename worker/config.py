"""vipflow's configuration: one typed settings object.

Loaded from the YAML file at ``--config`` or ``$VIPFLOW_CONFIG`` (absent: the
defaults), every key overridable by ``VIPFLOW_<SECTION>__<KEY>``. Secrets (the
VIP secret keys, the callback key, the wallet token) come only from the
environment or from a file named there (``..._FILE``); a secret written into
the YAML is refused. ``config.example.yaml`` documents every key.

Layers, each merged key by key over the next: values passed in code
(``Settings(redis=RedisSettings(url=...))`` sets ``redis.url`` only, the keys it
leaves unset come from below) > the environment > the YAML file > the
defaults. A ``VIPFLOW_*`` variable that sets nothing is warned about
(``worker.envvars``); a malformed URL is refused naming its key
(``worker.urls``); a relative ``rules.path`` or ``rules.shadow`` from the file
(and ``rules.candidate``) is relative to the file's directory, and the default ``rules/default`` that
does not exist there is the rule set shipped inside the package.
"""

from __future__ import annotations

import base64
import binascii
import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from worker.config_file import config_path, read_config_file
from worker.config_sources import YAML_DATA, CodeSource, KnownEnvSource, YamlSource
from worker.envvars import PREFIX, warn_unknown_variables
from worker.errors import ConfigError
from worker.rule_paths import DEFAULT_RULES, resolve_rule_path
from worker.urls import (
    check_database_url,
    check_http_url,
    check_path,
    check_redis_url,
    check_sentinel,
    sentinel_address,
)

HttpUrl = Annotated[str, AfterValidator(check_http_url)]
RedisUrl = Annotated[str, AfterValidator(check_redis_url)]
UrlPath = Annotated[str, AfterValidator(check_path)]
DatabaseUrl = Annotated[str, AfterValidator(check_database_url)]



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


def _sentinel_list(value: Any) -> Any:
    # From the environment: "h1:26379,h2:26379" (or a JSON list); from YAML: a list.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            try:
                return json.loads(text)
            except ValueError:
                raise ValueError("is neither HOST:PORT,HOST:PORT nor a JSON list of them") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


SentinelList = Annotated[list[Annotated[str, AfterValidator(check_sentinel)]], NoDecode,
                         BeforeValidator(_sentinel_list)]


class RedisSettings(_Section):
    url: RedisUrl = "redis://127.0.0.1:6379/0"
    key_prefix: str = "vipflow"
    # Redis Sentinel: when sentinels are listed, every vipflow process asks them for the master of
    # master_name (and again after a failover); redis.url then gives only the database number and the
    # master's user and password, its host and port are not used.
    sentinels: SentinelList = []
    master_name: str = Field("mymaster", min_length=1)
    sentinel_password: SecretStr | None = None  # the sentinels' own requirepass; from the environment only
    sentinel_password_file: Path | None = None
    # Replicas that must hold an accepted notification before the ingestor answers 200 (Redis WAIT);
    # null: 1 with sentinels (a failover then never loses an acknowledged notification), 0 without.
    replica_acks: int | None = Field(None, ge=0, le=16)
    replica_ack_timeout_ms: int = Field(500, ge=10, le=60_000)  # past this the ingestor answers 503

    @model_validator(mode="after")
    def _sentinel_secret(self) -> RedisSettings:
        secret = _read_secret(self.sentinel_password, self.sentinel_password_file, "sentinel_password")
        object.__setattr__(self, "sentinel_password", secret)
        return self

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The sentinels as ``(host, port)`` pairs; empty without Sentinel."""
        return [sentinel_address(s) for s in self.sentinels]

    def wanted_replica_acks(self) -> int:
        """How many replicas must confirm a notification before it is acknowledged (see replica_acks)."""
        if self.replica_acks is not None:
            return self.replica_acks
        return 1 if self.sentinels else 0


class VipSettings(_Section):
    base_url: HttpUrl = "http://127.0.0.1:8090"
    operator_id: str = ""
    audience: str = "vip-api"
    token_ttl_s: int = Field(600, ge=30, le=3600)
    timeout_s: float = Field(10.0, gt=0)
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)  # also the longest Retry-After honoured
    inquiry_max_attempts: int = Field(4, ge=1, le=20)  # account inquiry: asked again on 5xx/timeouts/resets
    account_cache_ttl_s: int = Field(300, ge=0)
    deposit_approval_path: UrlPath = "/api/operator/DepositApproval"
    withdraw_approval_path: UrlPath = "/api/operator/WithdrawApproval"
    transaction_path: UrlPath = "/api/operator/Transaction"
    account_lookup_path: UrlPath = "/api/patronsession/accountlookup"
    # Patron sessions (issue 14): opened by the operator's backend before any notification.
    session_existing_path: UrlPath = "/api/patronsession/existing"
    session_new_path: UrlPath = "/api/patronsession/new"
    # VIP's web component the patron is sent to (``?mode=...#sessionId``); empty: vip.base_url.
    web_component_url: str = ""
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
    deposit: UrlPath = "/vip/notify/deposit"
    withdraw: UrlPath = "/vip/notify/withdraw"
    error: UrlPath = "/vip/notify/error"


class IngestSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(65536, ge=1024)
    paths: IngestPaths = IngestPaths()
    auth: IngestAuthSettings = IngestAuthSettings()


class RulesSettings(_Section):
    path: Path = DEFAULT_RULES
    shadow: Path | None = None
    reload_interval_s: float = Field(5.0, gt=0)
    # Percentage rollout (``worker.rollout``): this share (percent, 0.01 steps) of transactions, chosen by a
    # stable hash of the transaction id, is decided and acted on by the rules at ``candidate``.
    candidate: Path | None = None
    candidate_share: Decimal = Field(Decimal(0), ge=0, le=100, decimal_places=2)

    @model_validator(mode="after")
    def _check_rollout(self) -> RulesSettings:
        if self.candidate_share > 0 and self.candidate is None:
            raise ValueError(f"candidate_share is {self.candidate_share} but rules.candidate is not set; name the "
                             "candidate rule directory, or set candidate_share to 0")
        return self


class ListsSettings(_Section):
    # How often a worker asks the ledger for the lists' versions and reads the ones that changed.
    reload_interval_s: float = Field(5.0, gt=0)
    # The most entries one list may hold: every worker keeps every list in memory (100,000 card numbers
    # take about 10 MB); an add or import past it is refused, changing nothing.
    max_entries: int = Field(1_000_000, ge=1)


class LimitsSettings(_Section):
    min_deposit: Decimal = Decimal("10.00")
    max_deposit: Decimal = Decimal("99999.99")
    min_withdraw: Decimal = Decimal("10.00")
    max_withdraw: Decimal = Decimal("999999.99")


class WalletSettings(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    adapter: Literal["http", "python"] = "http"
    url: HttpUrl = "http://127.0.0.1:8091"
    class_: str | None = Field(None, alias="class")
    timeout_s: float = Field(5.0, gt=0)
    token: SecretStr | None = None
    token_file: Path | None = None
    # Holds, and approvals still waiting (review, an approval never confirmed), older than this are
    # released and the transaction expires. 72 h: a review queue worked on business days reaches a
    # Friday evening's withdrawal by Monday; past that, the patron's money should not stay frozen.
    hold_max_age_s: int = Field(259_200, ge=60)
    expiry_interval_s: float = Field(60.0, gt=0)  # how often one worker looks for expired holds
    # Credit a confirmed deposit to the patron's wallet (PUT {url}/credits/{transaction id}). Off by
    # default: most operators' cashiers credit deposits themselves, and a deposit credited twice costs
    # more than one credited by the cashier instead of vipflow. Turn on where vipflow owns the credit.
    credit_deposits: bool = False

    @model_validator(mode="after")
    def _check(self) -> WalletSettings:
        if self.adapter == "python" and not self.class_:
            raise ValueError("adapter 'python' needs class: an import path like 'mypkg.wallet:Wallet'")
        object.__setattr__(self, "token", _read_secret(self.token, self.token_file, "token"))
        return self


class WorkerSettings(_Section):
    pool: Literal["threads", "prefork", "gevent", "solo"] = "threads"
    concurrency: int = Field(16, ge=1, le=512)
    # None (`off`, `null`, `false` in YAML, `off` in the environment): no metrics port; 0: any free port,
    # as `--vip-port 0` and every other port setting; the port chosen is logged.
    metrics_port: int | None = Field(9108, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    queue: str = "vipflow"
    max_deliveries: int = Field(5, ge=1)  # deliveries that kill their worker (the task's own retries apart)
    max_retries: int = Field(20, ge=0, le=1000)  # the task's own retries; waits 1, 2, 4 ... 30 s: ~8 min in all
    task_time_limit_s: int = Field(300, ge=10)
    visibility_timeout_s: int = Field(3600, ge=60)
    lock_ttl_s: int = Field(120, ge=5)
    # A pending notification (archived, its task not finished) whose task message was lost is queued again
    # this long after its lock expired (worker.recovery); keep it above the longest retry delay (30 s).
    recover_after_s: float = Field(120.0, ge=1, le=86_400)
    # How long a worker keeps trying to reach Redis, at start or after losing it, before it exits with code 1.
    broker_connect_timeout_s: float = Field(60.0, ge=1, le=86_400)
    # How often each `vipflow worker` writes its heartbeat (worker.heartbeat); 3 silent intervals: missing.
    heartbeat_interval_s: float = Field(10.0, ge=0.1, le=3600)

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _metrics_off(cls, value: Any) -> Any:
        if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("off", "none",
                                                                                                     "null")):
            return None
        if value is True:
            raise ValueError("use a port number, 0 for any free port, or off")
        return value


class DatabaseSettings(_Section):
    # The ledger. Relative SQLite paths are relative to the working directory.
    url: DatabaseUrl = "sqlite:///var/vipflow.db"


class LedgerSettings(_Section):
    dedupe_window_s: int = Field(7 * 86_400, ge=60)  # Redis forgets a final transaction after this
    retention_days: int = Field(2555, ge=1)  # seven years; `vipflow db prune` deletes what is older
    actor: str | None = None  # who the CLI records for human actions; default: the operating-system user
    drain_interval_s: float = Field(5.0, gt=0)  # how often a worker moves the intake buffer into the ledger


class ReviewSettings(_Section):
    max_age_s: int = Field(3600, ge=1)
    # Above this amount (Decimal dollars) an approval needs a second, different senior reviewer before
    # VIP Connect is called (four eyes); the first approval may come from anyone allowed to decide it.
    four_eyes_amount: Decimal = Field(Decimal("10000.00"), ge=0)
    # The most (Decimal dollars) a reviewer may decide (approve or reject) alone; a user's own limit
    # (`vipflow users add --limit`) replaces it. Senior reviewers have no limit.
    reviewer_limit: Decimal = Field(Decimal("5000.00"), ge=0)
    # A claim left idle this long (seconds: no page of it viewed, nothing done) lapses; anyone may claim it.
    claim_idle_s: int = Field(900, ge=30, le=86_400)


class StatusSettings(_Section):
    # `vipflow status`: a notification archived this long ago (seconds) and still unfinished needs a person.
    unprocessed_after_s: float = Field(300.0, gt=0)


class SessionsSettings(_Section):
    # True: every notification is expected to follow a session opened through vipflow (`vipflow web`);
    # operators who open sessions elsewhere keep it false. The rules read it as session.required.
    required: bool = False


_REDIRECT_STATES = ("pending", "received", "decided", "frozen", "approving", "approved", "review",
                    "rejected", "failed")


class RedirectSettings(_Section):
    """Where a returning patron goes: per transaction type and state, else ``default``."""

    default: str = "/"
    deposit: dict[str, str] = {}
    withdraw: dict[str, str] = {}

    @model_validator(mode="after")
    def _check(self) -> RedirectSettings:
        for kind in ("deposit", "withdraw"):
            for state, target in getattr(self, kind).items():
                if state not in _REDIRECT_STATES:
                    raise ValueError(f"{kind}.{state}: not a state; use one of {', '.join(_REDIRECT_STATES)}")
                if not target.startswith(("/", "https://", "http://")):
                    raise ValueError(f"{kind}.{state}: a path (/lobby) or an http(s) URL")
        return self

    def target(self, transaction_type: str | None, state: str) -> str:
        """The configured redirect for ``state`` of a ``transaction_type``, else the default."""
        table: dict[str, str] = getattr(self, transaction_type or "", None) or {}
        return table.get(state, self.default)


class OidcSettings(_Section):
    """The review workspace's optional OpenID Connect login (authorization code flow with PKCE)."""

    issuer: str = ""  # the provider's issuer URL (its discovery document is under it); empty: off
    client_id: str = ""
    # From VIPFLOW_WEB__OIDC__CLIENT_SECRET (or ..._FILE, a path); never in the YAML. None: a public client.
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    scope: str = "openid profile email"
    # The ID token's claim naming the workspace user (who must exist: `vipflow users add NAME --role R
    # --no-password`; the role is vipflow's, never the provider's).
    username_claim: str = "preferred_username"
    label: str = "single sign-on"  # the login page's button: "Log in with <label>"
    timeout_s: float = Field(10.0, gt=0)
    leeway_s: int = Field(60, ge=0, le=600)  # clock skew allowed on the ID token's times

    @model_validator(mode="after")
    def _check(self) -> OidcSettings:
        if self.issuer:
            check_http_url(self.issuer)
            if not self.client_id:
                raise ValueError("client_id is needed with an issuer")
        object.__setattr__(self, "client_secret",
                           _read_secret(self.client_secret, self.client_secret_file, "client_secret"))
        return self


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8092, ge=0, le=65535)
    max_body_bytes: int = Field(65536, ge=1024)  # larger request bodies get 413, unread
    # The review workspace's sessions: a signed cookie (HttpOnly, SameSite=Lax) signed with this secret,
    # from VIPFLOW_WEB__SESSION_SECRET (or ..._FILE, a path); never in the YAML. None: a random secret per
    # process (every login is lost when the service restarts; give one when several processes serve).
    session_secret: SecretStr | None = None
    session_secret_file: Path | None = None
    session_max_age_s: int = Field(8 * 3600, ge=60, le=30 * 86_400)  # a session ends this long after login
    session_idle_s: int = Field(1800, ge=60, le=86_400)  # ... or this long after its last request
    cookie_secure: bool = False  # True behind HTTPS: the cookie is then never sent in clear
    # Failed logins per user name within login_window_s before more are refused until the window passes;
    # per client address (hashed) the bound is higher (an office shares one address). Counted in Redis,
    # the keys expiring with the window.
    login_max_failures: int = Field(5, ge=1, le=1000)
    login_max_failures_per_address: int = Field(50, ge=1, le=100_000)
    login_window_s: int = Field(900, ge=10, le=86_400)
    oidc: OidcSettings = OidcSettings()

    @model_validator(mode="after")
    def _secret(self) -> WebSettings:
        secret = _read_secret(self.session_secret, self.session_secret_file, "session_secret")
        if secret is not None and len(secret.get_secret_value()) < 32:
            raise ValueError("session_secret must be at least 32 characters (the value is not shown)")
        object.__setattr__(self, "session_secret", secret)
        return self


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(BaseSettings):
    """Everything vipflow reads from its configuration, typed and checked."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    redis: RedisSettings = RedisSettings()
    vip: VipSettings = VipSettings()
    ingest: IngestSettings = IngestSettings()
    rules: RulesSettings = RulesSettings()
    lists: ListsSettings = ListsSettings()
    limits: LimitsSettings = LimitsSettings()
    wallet: WalletSettings = WalletSettings()
    worker: WorkerSettings = WorkerSettings()
    database: DatabaseSettings = DatabaseSettings()
    ledger: LedgerSettings = LedgerSettings()
    review: ReviewSettings = ReviewSettings()
    status: StatusSettings = StatusSettings()
    sessions: SessionsSettings = SessionsSettings()
    redirects: RedirectSettings = RedirectSettings()
    web: WebSettings = WebSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first, merged key by key (see worker.config_sources); the defaults come last.
        # The environment without mistyped VIPFLOW_* variables (warned about, then ignored).
        return CodeSource(settings_cls, init_settings), KnownEnvSource(settings_cls), YamlSource(settings_cls)


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and check the configuration; raise ConfigError naming the first bad key.

    Warns on stderr (once per process) about each ``VIPFLOW_*`` variable that sets nothing;
    ``rules.path``, ``rules.shadow`` and ``rules.candidate`` come back absolute (see ``worker.rule_paths``).
    """
    file = config_path(path)
    data = read_config_file(file) if file is not None else {}
    warn_unknown_variables(Settings, os.environ)
    token = YAML_DATA.set(data)
    try:
        settings = Settings()
    except ValidationError as exc:
        raise _config_error(exc) from None
    finally:
        YAML_DATA.reset(token)
    return _resolve_rule_paths(settings, file)


def _resolve_rule_paths(settings: Settings, file: Path | None) -> Settings:
    section = settings.rules
    path = resolve_rule_path(section.path, file, os.environ, "VIPFLOW_RULES__PATH")
    shadow = (resolve_rule_path(section.shadow, file, os.environ, "VIPFLOW_RULES__SHADOW")
              if section.shadow is not None else None)
    candidate = (resolve_rule_path(section.candidate, file, os.environ, "VIPFLOW_RULES__CANDIDATE")
                 if section.candidate is not None else None)
    return settings.model_copy(update={"rules": section.model_copy(
        update={"path": path, "shadow": shadow, "candidate": candidate})})


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
