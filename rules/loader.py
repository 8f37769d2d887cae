"""Reading rule files: YAML (safe, composed to nodes for line numbers) to a checked RuleSet.

Nothing in a rule file is executed: the file is composed with PyYAML's
SafeLoader into plain nodes and every value is checked against the grammar
and the fact catalogue. All problems in a file are collected, each with its
file, line and rule id, so that ``vipflow rules check`` reports them together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rules.catalogue import CATALOGUE
from rules.errors import RuleFileError, RuleFilesInvalid
from rules.lists import KIND_OF_FACT, LIST_NAME, LIST_NAME_RULE
from rules.model import (
    LIST_OPERATORS,
    OPERATORS,
    OUTCOMES,
    TRANSACTION_TYPES,
    All,
    Any_,
    Compare,
    Condition,
    FieldRef,
    ListRef,
    Not,
    Outcome,
    Rule,
    RuleSet,
    Scalar,
)
from rules.money import MoneyError, to_cents

_TOP_KEYS = ("ruleset", "version", "default", "freeze_on", "rules", "description")
_RULE_KEYS = ("id", "description", "when", "outcome")
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
_ORDERED = ("gt", "gte", "lt", "lte")
_REFUSED = object()  # stands in for a refused value; matches no expected type


class _Problems:
    def __init__(self, file: str):
        self.file = file
        self.items: list[RuleFileError] = []
        self.rule_id: str | None = None

    def add(self, node: Node | None, problem: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.items.append(RuleFileError(self.file, line, problem, self.rule_id))


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _Reader:
    """Walks composed YAML nodes; constructs scalars with the safe constructor only."""

    def __init__(self, text: str, problems: _Problems):
        self._loader = yaml.SafeLoader(text)
        self.p = problems

    def root(self) -> Node | None:
        try:
            return self._loader.get_single_node()
        finally:
            self._loader.dispose()

    def scalar(self, node: Node) -> Any:
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            # A tag the safe loader has no constructor for (!!python/...): refuse it here,
            # as a located problem, rather than let a raw YAML error escape the loader.
            self.p.add(node, f"tag '{node.tag}' is not allowed: a rule file is plain data")
            return _REFUSED

    def mapping(self, node: Node, what: str) -> list[tuple[str, Node, Node]] | None:
        if not isinstance(node, MappingNode):
            self.p.add(node, f"{what} must be a mapping")
            return None
        seen: set[str] = set()
        out = []
        for k, v in node.value:
            key = self.scalar(k) if isinstance(k, ScalarNode) else None
            if not isinstance(key, str):
                self.p.add(k, f"{what}: keys must be strings")
                continue
            if key in seen:
                self.p.add(k, f"duplicate key '{key}'")
                continue
            seen.add(key)
            out.append((key, k, v))
        return out


def load_ruleset_file(path: str | Path) -> RuleSet:
    """Read and check one rule file; raise RuleFilesInvalid listing every problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuleFilesInvalid([RuleFileError(str(path), None, f"cannot read: {exc.strerror}")]) from None
    return parse_ruleset(data, str(path))


def parse_ruleset(data: bytes, file: str) -> RuleSet:
    """Check the bytes of one rule file (named ``file`` in errors) and build its RuleSet."""
    problems = _Problems(file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RuleFilesInvalid([RuleFileError(file, None, "is not UTF-8 text")]) from None
    reader = _Reader(text, problems)
    try:
        root = reader.root()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or "cannot be parsed"
        raise RuleFilesInvalid([RuleFileError(file, line, f"not valid YAML: {reason}")]) from None
    if root is None:
        raise RuleFilesInvalid([RuleFileError(file, None, "is empty")])
    ruleset = _ruleset(reader, root, file, hashlib.sha256(data).hexdigest())
    if problems.items:  # with the rules that did load: their lists can still be checked in the same pass
        raise RuleFilesInvalid(problems.items, partial=() if ruleset is None else (ruleset,))
    assert ruleset is not None
    return dataclasses.replace(ruleset, text=text)


def _ruleset(r: _Reader, root: Node, file: str, digest: str) -> RuleSet | None:
    entries = r.mapping(root, "a rule file")
    if entries is None:
        return None
    fields: dict[str, tuple[Node, Node]] = {}
    for key, knode, vnode in entries:
        if key not in _TOP_KEYS:
            r.p.add(knode, f"unknown key '{key}' (expected one of {', '.join(_TOP_KEYS)})")
        fields[key] = (knode, vnode)
    for required in ("ruleset", "version", "rules"):
        if required not in fields:
            r.p.add(root, f"missing required key '{required}'")
    name = _pick(r, fields, "ruleset", TRANSACTION_TYPES, "a transaction type")
    version = r.scalar(fields["version"][1]) if "version" in fields else 0
    if "version" in fields and (not isinstance(version, int) or isinstance(version, bool) or version < 0):
        r.p.add(fields["version"][1], "version must be a whole number, 0 or more")
        version = 0
    default: Outcome = "review"
    if "default" in fields:
        default = _pick(r, fields, "default", OUTCOMES, "an outcome") or "review"  # type: ignore[assignment]
    freeze_on = _outcome_list(r, fields["freeze_on"][1]) if "freeze_on" in fields else ()
    rules = _rules(r, fields["rules"][1]) if "rules" in fields else ()
    if name is None:
        return None
    return RuleSet(name, version, default, freeze_on, rules, file, digest)


def _pick(r: _Reader, fields: dict[str, tuple[Node, Node]], key: str, allowed: tuple[str, ...],
          what: str) -> str | None:
    if key not in fields:
        return None
    node = fields[key][1]
    value = r.scalar(node) if isinstance(node, ScalarNode) else None
    if value not in allowed:
        given = f"'{value}' is not {what}" if isinstance(value, str) else f"needs {what}"
        r.p.add(node, f"{key}: {given}; use one of {', '.join(allowed)}")
        return None
    return str(value)


def _outcome_list(r: _Reader, node: Node) -> tuple[Outcome, ...]:
    if not isinstance(node, SequenceNode):
        r.p.add(node, "freeze_on must be a list of outcomes")
        return ()
    out: list[Outcome] = []
    for item in node.value:
        value = r.scalar(item) if isinstance(item, ScalarNode) else None
        if value not in OUTCOMES:
            r.p.add(item, f"freeze_on: '{value}' is not an outcome ({', '.join(OUTCOMES)})")
        else:
            out.append(value)
    return tuple(out)


def _rules(r: _Reader, node: Node) -> tuple[Rule, ...]:
    if not isinstance(node, SequenceNode):
        r.p.add(node, "rules must be a list")
        return ()
    out: list[Rule] = []
    ids: set[str] = set()
    for item in node.value:
        r.p.rule_id = None
        rule = _rule(r, item, ids)
        if rule is not None:
            out.append(rule)
    r.p.rule_id = None
    return tuple(out)


def _rule(r: _Reader, node: Node, ids: set[str]) -> Rule | None:
    entries = r.mapping(node, "a rule")
    if entries is None:
        return None
    fields = {key: (k, v) for key, k, v in entries}
    rule_id = r.scalar(fields["id"][1]) if "id" in fields and isinstance(fields["id"][1], ScalarNode) else None
    if isinstance(rule_id, str) and _RULE_ID.match(rule_id):
        r.p.rule_id = rule_id
        if rule_id in ids:
            r.p.add(fields["id"][1], "duplicate rule id")
        ids.add(rule_id)
    else:
        r.p.add(node, "every rule needs an id: lower-case letters, digits, '-' or '_'")
        rule_id = None
    for key, knode, _ in entries:
        if key not in _RULE_KEYS:
            r.p.add(knode, f"unknown key '{key}' (expected one of {', '.join(_RULE_KEYS)})")
    description = ""
    if "description" in fields:
        d = r.scalar(fields["description"][1]) if isinstance(fields["description"][1], ScalarNode) else None
        if not isinstance(d, str):
            r.p.add(fields["description"][1], "description must be text")
        else:
            description = d
    outcome = _pick(r, fields, "outcome", OUTCOMES, "an outcome")
    if "outcome" not in fields:
        r.p.add(node, "missing required key 'outcome'")
    when = _condition(r, fields["when"][1]) if "when" in fields else None
    if "when" not in fields:
        r.p.add(node, "missing required key 'when'")
    if rule_id is None or outcome is None or when is None:
        return None
    return Rule(rule_id, description, outcome, when, _line(node))  # type: ignore[arg-type]


def _condition(r: _Reader, node: Node) -> Condition | None:
    entries = r.mapping(node, "a condition")
    if entries is None:
        return None
    if not entries:
        r.p.add(node, "a condition cannot be empty")
        return None
    parts: list[Condition | None] = []
    for key, knode, vnode in entries:
        if key in ("all", "any"):
            if not isinstance(vnode, SequenceNode) or not vnode.value:
                r.p.add(vnode, f"'{key}' takes a non-empty list of conditions")
                parts.append(None)
                continue
            items = [_condition(r, item) for item in vnode.value]
            if any(i is None for i in items):
                parts.append(None)
                continue
            cls = All if key == "all" else Any_
            parts.append(cls(tuple(i for i in items if i is not None), _line(knode)))
        elif key == "not":
            inner = _condition(r, vnode)
            parts.append(Not(inner, _line(knode)) if inner is not None else None)
        else:
            parts.append(_field(r, key, knode, vnode))
    if any(p is None for p in parts):
        return None
    done = [p for p in parts if p is not None]
    return done[0] if len(done) == 1 else All(tuple(done), _line(node))


def _field(r: _Reader, path: str, knode: Node, vnode: Node) -> Condition | None:
    fact = CATALOGUE.get(path)
    if fact is None:
        r.p.add(knode, f"unknown field '{path}' (see the fact catalogue in the README)")
        return None
    if isinstance(vnode, MappingNode):
        entries = r.mapping(vnode, f"the operators for '{path}'")
        if entries is None:
            return None
        if not entries:
            r.p.add(vnode, f"'{path}' needs an operator or a value")
            return None
        tests = [_operator(r, path, op, k, v) for op, k, v in entries]
        if any(t is None for t in tests):
            return None
        done = [t for t in tests if t is not None]
        return done[0] if len(done) == 1 else All(tuple(done), _line(knode))
    if isinstance(vnode, SequenceNode):
        r.p.add(vnode, f"'{path}': a list needs an operator: {{in: [...]}}")
        return None
    return _operator(r, path, "eq", knode, vnode)


def _operator(r: _Reader, path: str, op: str, knode: Node, vnode: Node) -> Compare | None:
    if op not in OPERATORS:
        r.p.add(knode, f"unknown operator '{op}' (expected one of {', '.join(OPERATORS)})")
        return None
    line = _line(knode)
    if op == "exists":
        value = r.scalar(vnode) if isinstance(vnode, ScalarNode) else None
        if not isinstance(value, bool):
            r.p.add(vnode, f"'{path}': exists takes true or false")
            return None
        return Compare(path, "exists", value, line)
    if op in LIST_OPERATORS:
        return _list_ref(r, path, op, vnode, line)
    if op in ("in", "not_in"):
        if not isinstance(vnode, SequenceNode):
            r.p.add(vnode, f"'{path}': {op} takes a list of values")
            return None
        if not vnode.value:
            r.p.add(vnode, f"'{path}': {op} takes a non-empty list")
            return None
        values = [_literal(r, path, op, item) for item in vnode.value]
        if any(v is None for v in values):
            return None
        return Compare(path, op, tuple(v for v in values if v is not None), line)  # type: ignore[arg-type]
    if isinstance(vnode, MappingNode):
        ref = _field_ref(r, path, op, vnode)
        return Compare(path, op, ref, line) if ref is not None else None  # type: ignore[arg-type]
    value = _literal(r, path, op, vnode)
    return Compare(path, op, value, line) if value is not None else None  # type: ignore[arg-type]


def _list_ref(r: _Reader, path: str, op: str, node: Node, line: int) -> Compare | None:
    """``in_list: NAME``: the name's form here; whether the list exists is ``rules.lists.check_lists``."""
    if path not in KIND_OF_FACT:
        testable = ", ".join(sorted(KIND_OF_FACT))
        r.p.add(node, f"'{path}' cannot be tested against a list; {op} takes one of {testable}")
        return None
    name = r.scalar(node) if isinstance(node, ScalarNode) else None
    if not isinstance(name, str) or not LIST_NAME.match(name):
        r.p.add(node, f"'{path}': {op} takes a list's name ({LIST_NAME_RULE})")
        return None
    return Compare(path, op, ListRef(name), line)  # type: ignore[arg-type]


def _field_ref(r: _Reader, path: str, op: str, node: MappingNode) -> FieldRef | None:
    entries = r.mapping(node, "a field reference")
    if not entries or len(entries) != 1 or entries[0][0] != "field":
        r.p.add(node, f"'{path}': a mapping value must be {{field: other.path}}")
        return None
    other_node = entries[0][2]
    other = r.scalar(other_node) if isinstance(other_node, ScalarNode) else None
    if not isinstance(other, str) or other not in CATALOGUE:
        r.p.add(other_node, f"unknown field '{other}' (see the fact catalogue in the README)")
        return None
    left, right = CATALOGUE[path].type, CATALOGUE[other].type
    if left != right:
        r.p.add(other_node, f"'{path}' ({left}) cannot be compared with '{other}' ({right})")
        return None
    if op in ("gt", "gte", "lt", "lte") and left not in ("money", "count"):
        r.p.add(node, f"'{path}' is {left}: {op} needs a number")
        return None
    return FieldRef(other)


def _yaml(value: object) -> str:
    """A scalar as the rule file wrote it: true/false, numbers bare, strings quoted (not Python's repr)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else f"'{value}'"


def _literal(r: _Reader, path: str, op: str, node: Node) -> Scalar | None:
    fact = CATALOGUE[path]
    value = r.scalar(node) if isinstance(node, ScalarNode) else None
    if value is _REFUSED:
        return None
    if not isinstance(node, ScalarNode) or value is None:
        hint = "; to test for an unknown value use exists: false" if value is None else ""
        r.p.add(node, f"'{path}': {op} needs a single value{hint}")
        return None
    kind = "bool" if isinstance(value, bool) else "number" if isinstance(value, int | float) else "string"
    if fact.type in ("money", "count") and kind != "number":
        r.p.add(node, f"'{path}' is a number ({fact.type}); {_yaml(value)} is a {kind}")
        return None
    if fact.type == "string" and kind != "string":
        r.p.add(node, f"'{path}' is a string; {_yaml(value)} is a {kind}")
        return None
    if fact.type == "bool" and kind != "bool":
        r.p.add(node, f"'{path}' is true or false; {_yaml(value)} is a {kind}")
        return None
    if op in _ORDERED and fact.type in ("string", "bool"):
        r.p.add(node, f"'{path}' is a {fact.type}: {op} needs a number")
        return None
    if fact.type == "money":
        try:
            to_cents(Decimal(str(value)))
        except MoneyError as exc:
            r.p.add(node, f"'{path}': {exc}")
            return None
        return Decimal(str(value))
    if fact.type == "count" and not isinstance(value, int):
        r.p.add(node, f"'{path}' is a whole number; {_yaml(value)} is not")
        return None
    if fact.values and value not in fact.values:
        r.p.add(node, f"'{path}' is one of {', '.join(fact.values)}; {_yaml(value)} is not")
        return None
    return value  # type: ignore[no-any-return]
