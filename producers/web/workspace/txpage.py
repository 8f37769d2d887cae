"""What the transaction page shows: the whole story of one transaction from the ledger, masked.

Built on ``vipflow tx show``'s view (``producers.commands.txview.tx_view``: the record, its events and
notifications with personal data masked), plus every rule of the ruleset that decided it, matched or
not, with both sides of each comparison as the facts had them (``rules.explain.sides``), and the
patron's fields from the notification, masked, any one of which a reviewer may reveal (recorded first).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from producers.commands.txview import tx_view
from worker.ledger import Ledger
from worker.masking import mask_mapping, mask_text
from worker.notification import decode_body

WALLET_STEPS = ("freeze", "capture", "release", "credit", "reverse")
VIP_STEPS = ("approve", "inquiry", "lookup")


@dataclass(frozen=True)
class PatronField:
    """One field of the notification: its name, the value as shown, and whether it is masked (revealable)."""

    name: str
    shown: str
    masked: bool


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, name + "."))
        elif isinstance(value, list):
            out[name] = json.dumps(value, default=str)
        else:
            out[name] = value
    return out


def _body(ledger: Ledger, transaction_id: str) -> dict[str, Any]:
    """The first valid (else any) deposit or withdrawal notification's body, as received."""
    notes = [n for n in ledger.notifications_of(transaction_id) if n.kind != "error"]
    note = next((n for n in notes if n.status == "valid"), notes[0] if notes else None)
    if note is None:
        return {}
    with contextlib.suppress(Exception):  # an unreadable body shows no fields; the page is served anyway
        body = decode_body(note.body)
        return body if isinstance(body, dict) else {}
    return {}


def patron_fields(ledger: Ledger, transaction_id: str, reveal: str | None = None) -> list[PatronField]:
    """The notification's fields, masked where personal; ``reveal`` (a field name) shown in clear."""
    raw = _flat(_body(ledger, transaction_id))
    masked = _flat(mask_mapping(dict(_unflatten(raw))))
    out = []
    for name, value in raw.items():
        shown = masked.get(name, value)
        is_masked = str(shown) != str(value)
        if reveal == name and is_masked:
            out.append(PatronField(name, str(value), False))
        else:
            out.append(PatronField(name, "" if shown is None else str(shown), is_masked))
    return out


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def rule_rows(view: Mapping[str, Any], facts: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every rule of the deciding ruleset: id, outcome, matched, and its comparisons with both sides
    (masked: a fact may be a patron's); empty when the ledger lacks the rule text or the facts."""
    from rules.errors import VipflowError
    from rules.explain import sides
    from rules.loader import parse_ruleset

    rules = view.get("rules")
    record = view.get("record") or {}
    decision = record.get("decision") or {}
    if not rules or not isinstance(facts, Mapping):
        return []
    try:
        ruleset = parse_ruleset(str(rules["text"]).encode(), str(rules["file"]))
        compared = sides(ruleset, dict(facts))
    except (VipflowError, ValueError, KeyError):
        return []
    matched = {str(m.get("id")) for m in decision.get("matched", ())}
    return [{"id": rule.id, "description": rule.description, "outcome": rule.outcome, "matched": rule.id in matched,
             "sides": [{"line": s.line, "condition": s.condition, "left": mask_text(s.left),
                        "right": mask_text(s.right), "held": s.held} for s in compared.get(rule.id, ())]}
            for rule in ruleset.rules]


def story(ledger: Ledger, transaction_id: str) -> dict[str, Any] | None:
    """Everything the page shows (see the module docstring), or None when the ledger has no such
    transaction. ``raw_facts`` are used for the rule comparisons only (masked there)."""
    view = tx_view(ledger, transaction_id, rules=True)
    if view is None or view.get("record") is None:
        return None
    stored = ledger.load(transaction_id)
    raw_facts = stored.record.facts if stored is not None else None
    record = view["record"]
    actions = record.get("actions") or []
    return {
        "view": view,
        "record": record,
        "rules": rule_rows(view, raw_facts),
        "wallet": [a for a in actions if a.get("name") in WALLET_STEPS],
        "vip": [a for a in actions if a.get("name") in VIP_STEPS],
        "human": [e for e in view["events"] if e.get("kind") == "human"],
        "account": (record.get("facts") or {}).get("account"),
        "errors": record.get("errors") or [],
        "error_notes": [n for n in view["notifications"] if n.get("kind") == "error"],
    }
