"""The ``VIPFLOW_*`` environment variables: which ones are settings, and a warning for the others.

A setting is ``VIPFLOW_<SECTION>__<KEY>`` (two underscores between levels,
any case, as pydantic-settings reads them) or a whole section as JSON
(``VIPFLOW_REDIS='{"url": ...}'``). Besides those, ``VIPFLOW_CONFIG`` names the
file, and ``VIPFLOW_TEST_*`` and ``VIPFLOW_BENCH_*`` belong to the test suite and
the benchmarks. Anything else with the prefix is a mistake vipflow would
otherwise ignore in silence (``VIPFLOW_REDIS_URL``, one underscore): it is
warned about in one line naming the nearest key (none when no key is near) and
then ignored whatever its shape, ``VIPFLOW_REDIS__URLL`` included (the settings
never see it: ``worker.config_sources.KnownEnvSource``).
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
CUTOFF = 0.6  # how near (difflib ratio, prefix left out) a key must be to be suggested

_warned: set[str] = set()


def _names(model: type[BaseModel], stem: str) -> Iterator[tuple[str, str]]:
    # (name, what it is): "section" (a model, set whole as JSON), "table" (a dict: its own keys below
    # it are free), "key" (one value).
    for name, field in model.model_fields.items():
        for spelled in {name, field.alias or name}:
            here = f"{stem}{spelled.upper()}"
            kind: Any = field.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                yield here, "section"
                yield from _names(kind, here + "__")
            elif getattr(kind, "__origin__", None) is dict:
                yield here, "table"
            else:
                yield here, "key"


def setting_names(settings_cls: type[BaseModel]) -> list[str]:
    """Every variable name that sets something in ``settings_cls`` (upper case, sorted)."""
    return sorted({name for name, _ in _names(settings_cls, PREFIX)})


def _key_names(settings_cls: type[BaseModel]) -> list[str]:
    # What a suggestion may name: whole keys, never a section (VIPFLOW_FOO is not "VIPFLOW_LOG").
    return sorted({name for name, what in _names(settings_cls, PREFIX) if what != "section"})


def _tables(settings_cls: type[BaseModel]) -> tuple[str, ...]:
    return tuple(sorted({name + "__" for name, what in _names(settings_cls, PREFIX) if what == "table"}))


def is_setting(settings_cls: type[BaseModel], name: str) -> bool:
    """True when the variable ``name`` (any case) sets something: a key, a section as JSON, an entry of a
    table (``VIPFLOW_REDIRECTS__DEPOSIT__APPROVED``), or is one of vipflow's own non-settings."""
    upper = name.upper()
    if not upper.startswith(PREFIX) or upper in NOT_SETTINGS or upper.startswith(NOT_SETTINGS_PREFIXES):
        return True
    return upper in set(setting_names(settings_cls)) or upper.startswith(_tables(settings_cls))


def nearest_setting(settings_cls: type[BaseModel], name: str) -> str | None:
    """The whole key nearest to ``name`` (compared without the prefix; the first of equally near ones in
    sorted order, so KEY1 before KEY2), or None when none is near."""
    upper = name.upper().removeprefix(PREFIX)
    best, best_score = None, CUTOFF
    for key in _key_names(settings_cls):
        score = difflib.SequenceMatcher(None, upper, key.removeprefix(PREFIX)).ratio()
        if score > best_score or (best is None and score >= best_score):
            best, best_score = key, score
    return best



def unknown_variables(settings_cls: type[BaseModel], environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``(name, nearest setting or None)`` for each ``VIPFLOW_*`` variable in ``environ`` that sets nothing."""
    return [(name, nearest_setting(settings_cls, name)) for name in sorted(environ)
            if not is_setting(settings_cls, name)]


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
