"""Two versions of a ruleset compared rule by rule: added, removed, and changed rules (outcome,
description, condition), plus the ruleset's own settings (default outcome, freeze_on).

Rules are matched by id (order in the file does not change a decision: every matching rule is collected
and the most severe outcome wins). A condition is compared in a canonical text form, one line per
comparison, indented under ``all``/``any``/``not``, so that a moved line or a re-quoted value is not a
change, and a changed threshold shows as one ``-`` and one ``+`` line.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rules.model import All, Any_, Compare, Condition, FieldRef, ListRef, Not, Rule, RuleSet


def _value(v: object) -> str:
    if isinstance(v, FieldRef):
        return f"field {v.path}"
    if isinstance(v, ListRef):
        return v.name  # as the rule file writes it: ``in_list: blocked-cards``
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return format(v.normalize(), "f")  # 2500 and 2500.00 are the same amount
    if isinstance(v, tuple):
        return "[" + ", ".join(_value(i) for i in v) + "]"
    return str(v)


def condition_lines(c: Condition, depth: int = 0) -> list[str]:
    """The condition as canonical lines: ``path op value`` leaves, ``all:``/``any:``/``not:`` with their
    items indented two spaces further."""
    pad = "  " * depth
    if isinstance(c, Compare):
        return [f"{pad}{c.path} {c.op} {_value(c.value)}"]
    if isinstance(c, Not):
        return [f"{pad}not:", *condition_lines(c.item, depth + 1)]
    head = "all:" if isinstance(c, All) else "any:"
    assert isinstance(c, All | Any_)
    out = [f"{pad}{head}"]
    for item in c.items:
        out.extend(condition_lines(item, depth + 1))
    return out


@dataclass(frozen=True)
class RuleChange:
    """One rule added, removed or changed. ``condition``: for a changed condition, the lines as a diff
    (``- `` old, ``+ `` new, ``  `` the same); for an added or removed rule, its condition's lines."""

    id: str
    kind: str  # added | removed | changed
    outcome_before: str | None
    outcome_after: str | None
    description_before: str | None = None
    description_after: str | None = None
    condition: tuple[str, ...] = ()
    condition_changed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"id": self.id, "change": self.kind, "outcome_before": self.outcome_before,
                "outcome_after": self.outcome_after, "description_before": self.description_before,
                "description_after": self.description_after, "condition_changed": self.condition_changed,
                "condition": list(self.condition)}


@dataclass(frozen=True)
class RuleSetDiff:
    """What changed from ruleset ``before`` to ``after`` (labels say which versions they are)."""

    before: str
    after: str
    settings: tuple[tuple[str, str, str], ...] = ()  # (setting, before, after) for default, freeze_on, ruleset
    changes: tuple[RuleChange, ...] = ()
    unchanged: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def same(self) -> bool:
        """True when no rule and no setting changed."""
        return not self.settings and not self.changes

    def counts(self) -> dict[str, int]:
        """How many rules were added, removed, changed and left alone."""
        out = {"added": 0, "removed": 0, "changed": 0, "unchanged": self.unchanged}
        for c in self.changes:
            out[c.kind] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"before": self.before, "after": self.after,
                "settings": [{"setting": s, "before": b, "after": a} for s, b, a in self.settings],
                "rules": [c.to_dict() for c in self.changes], "counts": self.counts()}

    def render(self) -> list[str]:
        """Lines for a person: a header, settings changes, then ``+``/``-``/``~`` per rule, then counts."""
        lines = [f"--- {self.before}", f"+++ {self.after}"]
        for setting, was, now in self.settings:
            lines.append(f"~ {setting}: {was} -> {now}")
        for c in self.changes:
            if c.kind == "added":
                lines.append(f"+ rule {c.id} -> {c.outcome_after}")
                lines.extend(f"+     {line}" for line in c.condition)
            elif c.kind == "removed":
                lines.append(f"- rule {c.id} -> {c.outcome_before}")
                lines.extend(f"-     {line}" for line in c.condition)
            else:
                lines.append(f"~ rule {c.id}")
                if c.outcome_before != c.outcome_after:
                    lines.append(f"    outcome: {c.outcome_before} -> {c.outcome_after}")
                if c.description_before != c.description_after:
                    lines.append(f"    description: {c.description_before!r} -> {c.description_after!r}")
                if c.condition_changed:
                    lines.append("    condition:")
                    lines.extend(f"    {line}" for line in c.condition)
        n = self.counts()
        lines.append(f"{n['added']} added, {n['removed']} removed, {n['changed']} changed, "
                     f"{n['unchanged']} unchanged")
        return lines


def _changed(a: Rule, b: Rule) -> RuleChange | None:
    old, new = condition_lines(a.when), condition_lines(b.when)
    cond_changed = old != new
    if not cond_changed and a.outcome == b.outcome and a.description == b.description:
        return None
    shown: tuple[str, ...] = ()
    if cond_changed:
        shown = tuple(line for line in difflib.ndiff(old, new) if not line.startswith("? "))
    return RuleChange(a.id, "changed", a.outcome, b.outcome,
                      a.description if a.description != b.description else None,
                      b.description if a.description != b.description else None,
                      shown, cond_changed)


def diff_rulesets(before: RuleSet, after: RuleSet, before_label: str, after_label: str) -> RuleSetDiff:
    """Compare two versions rule by rule (matched by rule id): removed rules first (in ``before``'s order),
    then changed and added ones (in ``after``'s order)."""
    settings: list[tuple[str, str, str]] = []
    if before.name != after.name:
        settings.append(("ruleset", before.name, after.name))
    if before.default != after.default:
        settings.append(("default", before.default, after.default))
    if set(before.freeze_on) != set(after.freeze_on):
        settings.append(("freeze_on", "[" + ", ".join(before.freeze_on) + "]",
                         "[" + ", ".join(after.freeze_on) + "]"))
    old = {r.id: r for r in before.rules}
    new_ids = {r.id for r in after.rules}
    changes: list[RuleChange] = [RuleChange(r.id, "removed", r.outcome, None, condition=tuple(condition_lines(r.when)))
                                 for r in before.rules if r.id not in new_ids]
    unchanged = 0
    for rule in after.rules:
        was = old.get(rule.id)
        if was is None:
            changes.append(RuleChange(rule.id, "added", None, rule.outcome,
                                      condition=tuple(condition_lines(rule.when))))
            continue
        change = _changed(was, rule)
        if change is None:
            unchanged += 1
        else:
            changes.append(change)
    return RuleSetDiff(before_label, after_label, tuple(settings), tuple(changes), unchanged)
