"""The YAML configuration file: which one, and its sections, with no secret in them.

The file is ``--config FILE``, else ``$VIPFLOW_CONFIG``, else none (the
defaults and the environment). Secrets are never read from it: a secret key
written there stops loading, naming the variable to set instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from worker.envvars import PREFIX
from worker.errors import ConfigError

CONFIG_ENV = "VIPFLOW_CONFIG"

# Keys that hold secrets: never read from the YAML file.
SECRET_KEYS = {
    ("vip", "secret_key1"),
    ("vip", "secret_key2"),
    ("ingest", "auth", "callback_key"),
    ("wallet", "token"),
    ("web", "session_secret"),
    ("web", "oidc", "client_secret"),
    ("redis", "sentinel_password"),
}


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The configuration file to read: ``--config``, else ``$VIPFLOW_CONFIG``, else none."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else None


def _find_secrets(data: Any, path: tuple[str, ...] = ()) -> list[str]:
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            here = (*path, str(key))
            if here in SECRET_KEYS and value not in (None, ""):
                found.append(".".join(here))
            found.extend(_find_secrets(value, here))
    return found


def read_config_file(file: Path) -> dict[str, Any]:
    """The sections of a YAML configuration file; ConfigError naming the file (or the secret's key)
    when it cannot be used."""
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
    secrets = _find_secrets(loaded)
    if secrets:
        key = secrets[0]
        env = PREFIX + key.upper().replace(".", "__")
        raise ConfigError(key, f"secrets are never read from the config file; set {env} or {env}_FILE")
    return loaded
