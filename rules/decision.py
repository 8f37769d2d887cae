"""The Decision: what the rules say about one transaction, and why."""

from __future__ import annotations

from dataclasses import dataclass
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

    @property
    def matched_ids(self) -> tuple[str, ...]:
        """The matched rules' ids, in file order."""
        return tuple(m.id for m in self.matched)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, as recorded on the transaction."""
        return {
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
        )


def decide(ruleset: RuleSet, matched_ids: set[str]) -> Decision:
    """Combine matched rules: the most severe outcome wins; no match gives the default."""
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
    )
