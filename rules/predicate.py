"""Rules compiled to null-aware predicates in negation normal form.

Both evaluators work from this form: durable_rules (``rules.durable``) and the
plain-Python oracle (``evaluate`` here). Compiling does three things:

* fact paths become flat keys (``account.found`` -> ``account__found``), and
  money literals become integer cents (see ``rules.money``);
* ``in`` becomes an ``or`` of equalities, ``not_in`` an ``and`` of inequalities;
* ``in_list``/``not_in_list`` become a test of the membership fact the caller computed
  (``rules.lists.membership``: true, false, or null when the fact is unknown) for true/false;
* ``not`` is pushed down to the leaves with null-aware complements: a
  comparison with an unknown (null) fact is false, so ``not (x > 5)`` is
  ``x is null or x <= 5``. durable_rules' not-exists operator (``$nex``)
  spins forever, so presence is tested as equality with null instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rules.catalogue import CATALOGUE
from rules.lists import membership_key
from rules.model import All, Any_, Compare, Condition, FieldRef, ListRef, Not
from rules.money import to_cents

Value = str | bool | int

_COMPLEMENT = {"eq": "ne", "ne": "eq", "gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt"}


def flat_key(path: str) -> str:
    """The flat fact key of a catalogued path."""
    return path.replace(".", "__")


@dataclass(frozen=True)
class Ref:
    """Another fact's flat key, on the right of a comparison."""

    key: str


@dataclass(frozen=True)
class Cmp:
    """``key op value``: false when either side is null."""

    key: str
    op: str
    value: Value | Ref


@dataclass(frozen=True)
class IsNull:
    """The fact is unknown."""

    key: str


@dataclass(frozen=True)
class NotNull:
    """The fact is known."""

    key: str


@dataclass(frozen=True)
class And:
    """Every item holds."""

    items: tuple[Pred, ...]


@dataclass(frozen=True)
class Or:
    """At least one item holds."""

    items: tuple[Pred, ...]


Pred = Cmp | IsNull | NotNull | And | Or


def _literal(path: str, value: Any) -> Value:
    if CATALOGUE[path].type == "money":
        return to_cents(value if isinstance(value, Decimal) else Decimal(str(value)))
    return value  # type: ignore[no-any-return]


def _and(items: list[Pred]) -> Pred:
    return items[0] if len(items) == 1 else And(tuple(items))


def _or(items: list[Pred]) -> Pred:
    return items[0] if len(items) == 1 else Or(tuple(items))


def compile_condition(cond: Condition, negate: bool = False) -> Pred:
    """The condition as a predicate in negation normal form (negated when asked)."""
    if isinstance(cond, Not):
        return compile_condition(cond.item, not negate)
    if isinstance(cond, All | Any_):
        parts = [compile_condition(c, negate) for c in cond.items]
        conjunction = isinstance(cond, All) != negate
        return _and(parts) if conjunction else _or(parts)
    return _compare(cond, negate)


def _compare(c: Compare, negate: bool) -> Pred:
    key = flat_key(c.path)
    if c.op == "exists":
        present = bool(c.value) != negate
        return NotNull(key) if present else IsNull(key)
    if isinstance(c.value, ListRef):
        # The caller computed membership (``rules.lists.membership``): true, false, or unknown (None).
        member = membership_key(key, c.value.name)
        positive = (c.op == "in_list") != negate
        test = Cmp(member, "eq", positive)
        return Or((IsNull(member), test)) if negate else test
    if c.op in ("in", "not_in"):
        assert isinstance(c.value, tuple)
        positive = (c.op == "in") != negate
        op = "eq" if positive else "ne"
        leaves: list[Pred] = [Cmp(key, op, _literal(c.path, v)) for v in c.value]
        core = _or(leaves) if positive else _and(leaves)
        # A negated in/not_in also holds when x is unknown; "x not_in [..]" itself does not.
        return Or((IsNull(key), core)) if negate else core
    value: Value | Ref
    value = Ref(flat_key(c.value.path)) if isinstance(c.value, FieldRef) else _literal(c.path, c.value)
    if not negate:
        return Cmp(key, c.op, value)
    nulls: list[Pred] = [IsNull(key)]
    if isinstance(value, Ref):
        nulls.append(IsNull(value.key))
    return Or((*nulls, Cmp(key, _COMPLEMENT[c.op], value)))


def _holds(op: str, left: Any, right: Any) -> bool:
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if op == "gt":
        return bool(left > right)
    if op == "gte":
        return bool(left >= right)
    if op == "lt":
        return bool(left < right)
    return bool(left <= right)


def evaluate(pred: Pred, facts: dict[str, Any]) -> bool:
    """The plain-Python reading of a predicate over flat, prepared facts (the test oracle)."""
    if isinstance(pred, Cmp):
        left = facts.get(pred.key)
        right = facts.get(pred.value.key) if isinstance(pred.value, Ref) else pred.value
        if left is None or right is None:
            return False
        return _holds(pred.op, left, right)
    if isinstance(pred, IsNull):
        return facts.get(pred.key) is None
    if isinstance(pred, NotNull):
        return facts.get(pred.key) is not None
    if isinstance(pred, And):
        return all(evaluate(p, facts) for p in pred.items)
    return any(evaluate(p, facts) for p in pred.items)
