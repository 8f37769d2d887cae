"""The ``VIPFLOW_*`` environment variables: which ones are settings, and a warning for the others.

A setting is ``VIPFLOW_<SECTION>__<KEY>`` (two underscores between levels,
any case, as pydantic-settings reads them) or a whole section as JSON
(``VIPFLOW_REDIS='{"url": ...}'``). Besides those, ``VIPFLOW_CONFIG`` names the
file, and ``VIPFLOW_TEST_*`` and ``VIPFLOW_BENCH_*`` belong to the test suite and
the benchmarks. Anything else with the prefix is a mistake vipflow would
otherwise ignore in silence (``VIPFLOW_REDIS_URL``, one underscore).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

PREFIX = "VIPFLOW_"
NOT_SETTINGS = ("VIPFLOW_CONFIG",)
NOT_SETTINGS_PREFIXES = ("VIPFLOW_TEST_", "VIPFLOW_BENCH_")

_warned: set[str] = set()


def _names(model: type[BaseModel], stem: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        for spelled in {name, field.alias or name}:
            here = f"{stem}{spelled.upper()}"
            yield here
            kind: Any = field.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                yield from _names(kind, here + "__")


def setting_names(settings_cls: type[BaseModel]) -> list[str]:
    """Every variable name that sets something in ``settings_cls`` (upper case, sorted)."""
    return sorted(set(_names(settings_cls, PREFIX)))


def unknown_variables(settings_cls: type[BaseModel], environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``(name, nearest setting or None)`` for each ``VIPFLOW_*`` variable in ``environ`` that sets nothing."""
    known = setting_names(settings_cls)
    known_set = set(known)
    found = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in known_set or upper in NOT_SETTINGS:
            continue
        if upper.startswith(NOT_SETTINGS_PREFIXES):
            continue
        nearest = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        found.append((name, nearest[0] if nearest else None))
    return found


def warn_unknown_variables(settings_cls: type[BaseModel], environ: Mapping[str, str]) -> list[str]:
    """Print one warning line on stderr per unknown ``VIPFLOW_*`` variable (once per process and name);
    return the lines printed."""
    lines = []
    for name, nearest in unknown_variables(settings_cls, environ):
        if name in _warned:
            continue
        _warned.add(name)
        hint = (f"did you mean {nearest}?" if nearest
                else "settings are VIPFLOW_<SECTION>__<KEY>, see config.example.yaml")
        lines.append(f"vipflow: warning: {name} matches no setting and is ignored; {hint}")
    for line in lines:
        print(line, file=sys.stderr)
    return lines
