"""Preparing facts for evaluation: nested mapping in, flat checked mapping out.

Every catalogued path gets a value (None when unknown); money becomes integer
cents; a value of the wrong type, or a path the catalogue does not know, is a
FactError naming the path (never the value: facts carry personal data).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from rules.catalogue import CATALOGUE, FACTS
from rules.errors import FactError
from rules.money import MoneyError, to_cents
from rules.predicate import flat_key

_FLAT_KEYS = tuple(flat_key(f.path) for f in FACTS)


def _walk(facts: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in facts.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _walk(value, f"{path}.", out)
        else:
            out[path] = value


def prepare(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten and check nested facts against the catalogue; money to integer cents."""
    paths: dict[str, Any] = {}
    _walk(facts, "", paths)
    flat: dict[str, Any] = dict.fromkeys(_FLAT_KEYS)
    for path, value in paths.items():
        fact = CATALOGUE.get(path)
        if fact is None:
            raise FactError(f"unknown fact '{path}' (not in the fact catalogue)")
        if value is None:
            continue
        flat[flat_key(path)] = _typed(path, fact.type, value)
    return flat


def _typed(path: str, type_: str, value: Any) -> Any:
    if type_ == "bool":
        if not isinstance(value, bool):
            raise FactError(f"fact '{path}' must be true or false")
        return value
    if type_ == "string":
        if not isinstance(value, str):
            raise FactError(f"fact '{path}' must be a string")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise FactError(f"fact '{path}' must be a number")
    if type_ == "count":
        if not isinstance(value, int):
            raise FactError(f"fact '{path}' must be a whole number")
        return value
    try:
        return to_cents(value if isinstance(value, Decimal) else Decimal(str(value)))
    except MoneyError as exc:  # the message names the fact, never its value
        raise FactError(f"fact '{path}' {exc.problem}; amounts are dollars with at most two decimals, "
                        "e.g. 61.90") from None
    except ArithmeticError:
        raise FactError(f"fact '{path}' is not a number; amounts are dollars with at most two decimals, "
                        "e.g. 61.90") from None
