"""The Decision: what the rules say about one transaction, and why."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rules.model import SEVERITY, Outcome, RuleSet


@dataclass(frozen=True)
class MatchedRule:
    """A rule whose condition held."""

    id: str
    description: str
    outcome: Outcome


@dataclass(frozen=True)
class Decision:
    """The outcome, every matched rule, and the ruleset version that decided it."""

    outcome: Outcome
    matched: tuple[MatchedRule, ...]
    used_default: bool
    ruleset: str
    version: int
    content_hash: str
    freeze: bool
    # The version of every list the ruleset names (``rules.lists``), as used for this decision.
    lists: Mapping[str, int] = field(default_factory=dict)

    @property
    def matched_ids(self) -> tuple[str, ...]:
        """The matched rules' ids, in file order."""
        return tuple(m.id for m in self.matched)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, as recorded on the transaction (``lists`` only when the ruleset names lists)."""
        out: dict[str, Any] = {
            "outcome": self.outcome,
            "matched": [
                {"id": m.id, "description": m.description, "outcome": m.outcome} for m in self.matched
            ],
            "used_default": self.used_default,
            "ruleset": self.ruleset,
            "version": self.version,
            "content_hash": self.content_hash,
            "freeze": self.freeze,
        }
        if self.lists:
            out["lists"] = dict(sorted(self.lists.items()))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """The inverse of ``to_dict``."""
        return cls(
            outcome=data["outcome"],
            matched=tuple(MatchedRule(m["id"], m["description"], m["outcome"]) for m in data["matched"]),
            used_default=bool(data["used_default"]),
            ruleset=data["ruleset"],
            version=int(data["version"]),
            content_hash=data["content_hash"],
            freeze=bool(data["freeze"]),
            lists={str(k): int(v) for k, v in (data.get("lists") or {}).items()},
        )


def decide(ruleset: RuleSet, matched_ids: set[str], lists: Mapping[str, int] | None = None) -> Decision:
    """Combine matched rules: the most severe outcome wins; no match gives the default. ``lists``: the
    version of each list the rules were given."""
    matched = tuple(
        MatchedRule(r.id, r.description, r.outcome) for r in ruleset.rules if r.id in matched_ids
    )
    outcome = max((m.outcome for m in matched), key=SEVERITY.__getitem__) if matched else ruleset.default
    return Decision(
        outcome=outcome,
        matched=matched,
        used_default=not matched,
        ruleset=ruleset.name,
        version=ruleset.version,
        content_hash=ruleset.content_hash,
        freeze=outcome in ruleset.freeze_on,
        lists=dict(lists or {}),
    )
