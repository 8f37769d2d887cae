"""Explaining a decision: every rule, matched or not, and for each unmatched rule
the first condition that failed, with the value the facts actually had."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rules.catalogue import CATALOGUE
from rules.decision import Decision, decide
from rules.facts import prepare
from rules.lists import EMPTY, ListLookup, membership, membership_checks, membership_key
from rules.model import All, Any_, Compare, Condition, FieldRef, ListRef, Not, Rule, RuleSet
from rules.predicate import compile_condition, evaluate, flat_key


@dataclass(frozen=True)
class Failure:
    """The first condition of a rule that did not hold."""

    line: int
    condition: str
    actual: str


@dataclass(frozen=True)
class RuleExplanation:
    """One rule: whether it matched, and if not, why not."""

    rule: Rule
    matched: bool
    failure: Failure | None


@dataclass(frozen=True)
class Explanation:
    """Every rule explained, and the decision they add up to."""

    rules: tuple[RuleExplanation, ...]
    decision: Decision

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "rules": [
                {
                    "id": r.rule.id,
                    "outcome": r.rule.outcome,
                    "matched": r.matched,
                    "failed": None if r.failure is None else {
                        "line": r.failure.line,
                        "condition": r.failure.condition,
                        "actual": r.failure.actual,
                    },
                }
                for r in self.rules
            ],
            "decision": self.decision.to_dict(),
        }


def _shown(path: str, flat: dict[str, Any]) -> str:
    value = flat.get(flat_key(path))
    if value is None:
        return f"{path} is unknown"
    if CATALOGUE[path].type == "money":
        value = Decimal(value) / 100
        return f"{path} = {value:.2f}"
    if isinstance(value, bool):
        return f"{path} = {'true' if value else 'false'}"
    return f"{path} = {value!r}"


def _on_list(c: Compare, flat: dict[str, Any], versions: dict[str, int], held: Mapping[str, str]) -> str:
    assert isinstance(c.value, ListRef)
    key = membership_key(flat_key(c.path), c.value.name)
    member = flat.get(key)
    verdict = "cannot be on" if member is None else "is on" if member else "is not on"
    inside = f" (inside its range {held[key]})" if key in held else ""
    return f"{_shown(c.path, flat)}, which {verdict} list {c.value.name} v{versions.get(c.value.name, '?')}{inside}"


def _text(c: Condition) -> str:
    if isinstance(c, Compare):
        if isinstance(c.value, ListRef):
            return f"{c.path} {c.op} {c.value.name}"
        if isinstance(c.value, FieldRef):
            return f"{c.path} {c.op} field {c.value.path}"
        if isinstance(c.value, tuple):
            return f"{c.path} {c.op} [{', '.join(map(str, c.value))}]"
        value = str(c.value).lower() if isinstance(c.value, bool) else str(c.value)
        return f"{c.path} {c.op} {value}"
    if isinstance(c, Not):
        return f"not ({_text(c.item)})"
    joiner = " and " if isinstance(c, All) else " or "
    return "(" + joiner.join(_text(i) for i in c.items) + ")"


def _first_failure(c: Condition, flat: dict[str, Any], versions: dict[str, int],
                   held: Mapping[str, str]) -> Failure | None:
    if evaluate(compile_condition(c), flat):
        return None
    if isinstance(c, All):
        for item in c.items:
            failure = _first_failure(item, flat, versions, held)
            if failure is not None:
                return failure
    if isinstance(c, Compare) and isinstance(c.value, ListRef):
        return Failure(c.line, _text(c), _on_list(c, flat, versions, held))
    if isinstance(c, Compare):
        actual = [_shown(c.path, flat)]
        if isinstance(c.value, FieldRef):
            actual.append(_shown(c.value.path, flat))
        return Failure(c.line, _text(c), ", ".join(actual))
    if isinstance(c, Any_):
        inner = [_first_failure(i, flat, versions, held) for i in c.items]
        shown = "; ".join(f.actual for f in inner if f is not None)
        return Failure(c.line, _text(c), f"no alternative held ({shown})")
    if isinstance(c, Not):
        return Failure(c.line, _text(c), "the negated condition held")
    return Failure(c.line, _text(c), "did not hold")


def explain(ruleset: RuleSet, facts: dict[str, Any], lists: ListLookup = EMPTY) -> Explanation:
    """Explain every rule of ``ruleset`` against nested facts and ``lists`` (name -> NamedList; RuleError
    when the ruleset names a list not there). A list condition that failed says whether the fact is on
    the list, and the list's version; for an address on a cidr list, the (narrowest) range holding it."""
    flat = prepare(facts)
    checks = membership_checks(ruleset.list_pairs)
    versions = membership(checks, flat, lists) if checks else {}
    held: dict[str, str] = {}  # membership key -> the range holding the address (cidr lists)
    for check in checks:
        found = lists.get(check.name)
        if found is not None and found.kind == "cidr" and flat.get(check.key):
            entry = found.holding(flat.get(check.flat_path))
            if entry is not None:
                held[check.key] = entry
    rows = []
    for rule in ruleset.rules:
        failure = _first_failure(rule.when, flat, versions, held)
        rows.append(RuleExplanation(rule, failure is None, failure))
    decision = decide(ruleset, {r.rule.id for r in rows if r.matched}, versions or None)
    return Explanation(tuple(rows), decision)


@dataclass(frozen=True)
class Side:
    """One comparison of a rule against the facts: its text, the fact's value (``left``), the other side
    (a literal, or a field's value in ``right``), and whether it held."""

    line: int
    condition: str
    left: str
    right: str
    held: bool


def _leaves(c: Condition) -> list[Compare]:
    if isinstance(c, Compare):
        return [c]
    if isinstance(c, Not):
        return _leaves(c.item)
    return [leaf for item in c.items for leaf in _leaves(item)]


def sides(ruleset: RuleSet, facts: dict[str, Any]) -> dict[str, tuple[Side, ...]]:
    """Per rule id, every comparison in it with both sides as the facts had them (money in dollars)."""
    flat = prepare(facts)
    out: dict[str, tuple[Side, ...]] = {}
    for rule in ruleset.rules:
        rows = []
        for leaf in _leaves(rule.when):
            if isinstance(leaf.value, FieldRef):
                right = _shown(leaf.value.path, flat)
            elif isinstance(leaf.value, tuple):
                right = "[" + ", ".join(map(str, leaf.value)) + "]"
            else:
                right = str(leaf.value).lower() if isinstance(leaf.value, bool) else str(leaf.value)
            rows.append(Side(leaf.line, _text(leaf), _shown(leaf.path, flat), right,
                             bool(evaluate(compile_condition(leaf), flat))))
        out[rule.id] = tuple(rows)
    return out
