"""How vipflow words things for people: counted nouns, and validation problems without Python's types.

pydantic's own messages name Python types ("Decimal input should be an integer,
float, string or Decimal object", "Input should be a valid dictionary"); a person
who sent JSON or wrote YAML should read what to send instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_PROBLEMS = {
    "decimal_parsing": "must be an amount such as 61.90 (a number, or a string holding one)",
    "decimal_type": "must be an amount such as 61.90 (a number, or a string holding one)",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text (a JSON string)",
    "dict_type": "must be a JSON object (a mapping of keys to values)",
    "model_type": "must be a JSON object (a mapping of keys to values)",
    "model_attributes_type": "must be a JSON object (a mapping of keys to values)",
    "list_type": "must be a list",
    "missing": "is required",
}


def plural(count: int, noun: str, nouns: str | None = None, *, grouped: bool = False) -> str:
    """``1 notification``, ``2 notifications``, ``0 notifications`` (``nouns`` for irregular plurals:
    ``plural(1, "entry", "entries")``); ``grouped``: thousands separated, ``1,200 entries``."""
    return (f"{count:,}" if grouped else f"{count}") + " " + noun_for(count, noun, nouns)


def noun_for(count: int, noun: str, nouns: str | None = None) -> str:
    """The noun alone as ``plural`` words it (``entry``, ``entries``), for a count printed apart (aligned)."""
    return noun if count == 1 else nouns or noun + "s"


def a(noun: str) -> str:
    """``noun`` with its indefinite article by its first letter: ``a viewer``, ``an admin``, ``an approval``
    (enough for vipflow's own nouns; not for "an hour" or "a user")."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def validation_problem(error: Mapping[str, Any]) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) as a problem in plain words: what the
    value must be, never a Python type name; pydantic's own message where it names none."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind in _PROBLEMS:
        return _PROBLEMS[kind]
    if kind == "string_too_short":
        return f"must be at least {plural(int(ctx.get('min_length', 0)), 'character')} long"
    if kind == "string_too_long":
        return f"must be at most {plural(int(ctx.get('max_length', 0)), 'character')} long"
    return str(error.get("msg", "is not valid")).removeprefix("Value error, ")
