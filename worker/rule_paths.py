"""Where the rule files are: a relative ``rules.path`` made absolute, or the rule set shipped inside vipflow.

A relative path written in the configuration file is relative to the file's
directory; one from the environment (``VIPFLOW_RULES__PATH``), or any when
there is no file, to the working directory. The default ``rules/default`` that
does not exist there is the rule set shipped inside the package (package data
of ``rules``), so ``vipflow rules check`` works from any directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import rules

SHIPPED_RULES = Path(rules.__file__).resolve().parent / "default"
DEFAULT_RULES = Path("rules/default")


def resolve_rule_path(value: Path, file: Path | None, environ: Mapping[str, str], variable: str) -> Path:
    """``value`` made absolute (see the module docstring); ``variable`` is the one that would set it."""
    if value.is_absolute():
        return value
    names = {k.upper() for k in environ}
    from_env = variable in names or "VIPFLOW_RULES" in names  # the key alone, or the section as JSON
    root = file.absolute().parent if file is not None and not from_env else Path.cwd()
    path = Path(os.path.normpath(root / value))  # "conf/../rules" named as "rules"
    if value == DEFAULT_RULES and not path.exists():
        return SHIPPED_RULES
    return path


def rules_origin(path: Path) -> str:
    """A resolved rules path as told to a person: the path, and whether it is the shipped rule set."""
    return f"{path} (the rules shipped with vipflow)" if path == SHIPPED_RULES else str(path)
