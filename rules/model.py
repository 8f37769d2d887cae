"""The rule language's parsed form: frozen dataclasses, no behaviour beyond shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Literal

Outcome = Literal["approve", "review", "reject"]
OUTCOMES: tuple[Outcome, ...] = ("approve", "review", "reject")
SEVERITY: dict[str, int] = {"approve": 0, "review": 1, "reject": 2}

Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "in_list", "not_in_list"]
OPERATORS: tuple[str, ...] = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "in_list",
                              "not_in_list")
LIST_OPERATORS: tuple[str, ...] = ("in_list", "not_in_list")
TRANSACTION_TYPES = ("deposit", "withdraw")

Scalar = str | bool | int | Decimal


@dataclass(frozen=True)
class FieldRef:
    """The right-hand side ``{field: other.path}``: compare with another fact."""

    path: str


@dataclass(frozen=True)
class ListRef:
    """The right-hand side of ``in_list``/``not_in_list``: a named list (``rules.lists``)."""

    name: str


@dataclass(frozen=True)
class Compare:
    """``path op value``; for ``in``/``not_in`` the value is a tuple, for ``exists`` a bool, for
    ``in_list``/``not_in_list`` a ListRef."""

    path: str
    op: Op
    value: Scalar | FieldRef | ListRef | tuple[Scalar, ...]
    line: int


@dataclass(frozen=True)
class All:
    """Every item holds."""

    items: tuple[Condition, ...]
    line: int


@dataclass(frozen=True)
class Any_:  # noqa: N801 - the trailing underscore keeps typing.Any unshadowed
    """At least one item holds."""

    items: tuple[Condition, ...]
    line: int


@dataclass(frozen=True)
class Not:
    """The item does not hold (a comparison with an unknown fact does not hold)."""

    item: Condition
    line: int


Condition = Compare | All | Any_ | Not


@dataclass(frozen=True)
class Rule:
    """One rule: when its condition holds, it proposes its outcome."""

    id: str
    description: str
    outcome: Outcome
    when: Condition
    line: int


@dataclass(frozen=True)
class ListUse:
    """One use of a list by a rule: which fact is tested against which list, where."""

    rule_id: str
    path: str
    name: str
    line: int


@dataclass(frozen=True)
class RuleSet:
    """One rule file: the rules for one transaction type."""

    name: str
    version: int
    default: Outcome
    freeze_on: tuple[Outcome, ...]
    rules: tuple[Rule, ...]
    file: str
    content_hash: str  # sha256 of the file's bytes: the ledger keeps ``text`` once under it
    text: str = field(default="", repr=False, compare=False)  # the file as written

    @cached_property
    def fact_paths(self) -> frozenset[str]:
        """Every fact the rules read, on either side of a comparison."""
        out: set[str] = set()

        def walk(cond: Condition) -> None:
            if isinstance(cond, Compare):
                out.add(cond.path)
                if isinstance(cond.value, FieldRef):
                    out.add(cond.value.path)
            elif isinstance(cond, Not):
                walk(cond.item)
            else:
                for item in cond.items:
                    walk(item)

        for r in self.rules:
            walk(r.when)
        return frozenset(out)

    @cached_property
    def list_refs(self) -> tuple[ListUse, ...]:
        """Every (rule, fact, list) a rule names with ``in_list``/``not_in_list``, in file order."""
        out: list[ListUse] = []

        def walk(rule_id: str, cond: Condition) -> None:
            if isinstance(cond, Compare):
                if isinstance(cond.value, ListRef):
                    out.append(ListUse(rule_id, cond.path, cond.value.name, cond.line))
            elif isinstance(cond, Not):
                walk(rule_id, cond.item)
            else:
                for item in cond.items:
                    walk(rule_id, item)

        for r in self.rules:
            walk(r.id, r.when)
        return tuple(out)

    @cached_property
    def list_pairs(self) -> tuple[tuple[str, str], ...]:
        """The distinct (fact path, list name) pairs the rules test: one membership fact each."""
        return tuple(dict.fromkeys((u.path, u.name) for u in self.list_refs))

    @cached_property
    def list_names(self) -> tuple[str, ...]:
        """The distinct lists the rules name, sorted."""
        return tuple(sorted({u.name for u in self.list_refs}))

    def reads(self, namespace: str) -> bool:
        """True when some rule reads a fact under ``namespace`` (``wallet`` reads ``wallet.balance``)."""
        head = namespace + "."
        return any(p == namespace or p.startswith(head) for p in self.fact_paths)

    def rule(self, rule_id: str) -> Rule:
        """The rule with that id; KeyError when there is none."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)
