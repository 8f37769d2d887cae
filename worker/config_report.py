"""Which state a process uses, said in words: the Redis and database, the ledger, the rules, and where
each came from. For ``vipflow --verbose`` and the start lines of the worker and the ingestor.

URLs are shown without their passwords; no secret value is ever shown, only the
names of the variables that set something.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.config import Settings, load_settings
from worker.config_file import config_path, read_config_file
from worker.envvars import PREFIX, setting_names
from worker.rule_paths import rules_origin
from worker.urls import redacted, redis_db


def redis_summary(settings: Settings) -> str:
    """``redis://host:6379/2 (database 2, key prefix 'vipflow')``, password hidden."""
    url = settings.redis.url
    if settings.redis.sentinels:
        return (f"master '{settings.redis.master_name}' via sentinels {', '.join(settings.redis.sentinels)} "
                f"(database {redis_db(url)}, key prefix '{settings.redis.key_prefix}')")
    return f"{redacted(url)} (database {redis_db(url)}, key prefix '{settings.redis.key_prefix}')"


def ledger_summary(settings: Settings) -> str:
    """The ledger's URL, password hidden; a relative SQLite file also as the absolute path it opens."""
    url = settings.database.url
    shown = redacted(url)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        if not path.is_absolute():
            shown += f" (the file {path.absolute()})"
    return shown


def _origin(key: tuple[str, ...], data: Mapping[str, Any], file: Path | None, env_names: set[str]) -> str:
    variable = PREFIX + "__".join(key).upper()
    if variable in env_names:
        return f"from {variable}"
    if PREFIX + key[0].upper() in env_names:
        return f"from {PREFIX}{key[0].upper()}"
    section: Any = data
    for part in key:
        section = section.get(part) if isinstance(section, Mapping) else None
    if section is not None and file is not None:
        return f"from {file}"
    return "default"


def describe(explicit: str | os.PathLike[str] | None = None,
             environ: Mapping[str, str] | None = None) -> list[str]:
    """Lines naming the configuration file, the Redis and database, the ledger and the rules a command
    would use with ``--config explicit``, each with where it came from; ConfigError as load_settings."""
    environ = os.environ if environ is None else environ
    settings = load_settings(explicit)
    file = config_path(explicit)
    data = read_config_file(file) if file is not None else {}
    env_names = {k.upper() for k in environ}
    known = set(setting_names(Settings))
    overrides = sorted(n for n in env_names if n in known)
    lines = [f"configuration: {file.absolute()}" if file is not None
             else "configuration: no file (built-in defaults and VIPFLOW_* variables)",
             f"redis: {redis_summary(settings)}, {_origin(('redis', 'url'), data, file, env_names)}",
             f"ledger: {ledger_summary(settings)}, {_origin(('database', 'url'), data, file, env_names)}",
             f"rules: {rules_origin(settings.rules.path)}, {_origin(('rules', 'path'), data, file, env_names)}",
             "environment: " + (", ".join(overrides) + " (values not shown)" if overrides else "no VIPFLOW_* setting")]
    if settings.rules.candidate is not None:  # a percentage rollout: which rules decide which share
        lines.insert(-1, f"rollout: candidate {settings.rules.candidate} decides "
                         f"{settings.rules.candidate_share:.2f} % of transactions (rules.candidate_share)")
    return lines
