"""The rules report: for each rule, how often it matched, the outcomes of the decisions it matched in,
and its precision and recall against the outcome labels, with the amounts; the same per ruleset version.

What is counted: every transaction the ledger holds with a decision, first received in the window
(``since_ms``/``until_ms``, epoch milliseconds, inclusive), once, with the decision it was acted on (its
latest) and its label (the latest one recorded; ``worker.labels.store``). A transaction decided with a
shadow ruleset (``rules.shadow``) counts for that shadow version too, as if the shadow had decided.

A label is *bad* (an ACH return, a chargeback, confirmed fraud) or *good* (confirmed good); a transaction
without a label counts for matches, outcomes and amounts, never for precision or recall. For a rule R
in a scope S (one ruleset version, or all versions of a ruleset), over S's labelled transactions:

- R flags (its outcome is ``reject`` or ``review``): a match says "bad".
  precision = bad ones R matched / labelled ones R matched;
  recall = bad ones R matched / bad ones in S.
- R approves (outcome ``approve``): a match says "good".
  precision = good ones R matched / labelled ones R matched;
  recall = good ones R matched / good ones in S.

Both are None when their denominator is 0. The default (no rule matched) is reported as the rule
``(default)`` with the default outcome. A version as a whole: its flagged decisions (review or reject)
and its approvals are measured the same way, and the bad money it approved is named.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from worker.labels.codes import verdict
from worker.ledger import tables as t
from worker.ledger.commit import unavailable

DEFAULT_RULE = "(default)"
FLAGGING = ("reject", "review")
OUTCOMES = ("approve", "review", "reject")
_CENT = Decimal("0.01")


def _money(value: Decimal) -> str:
    return str(value.quantize(_CENT))


def ratio(num: int, den: int) -> float | None:
    """``num / den`` rounded to 4 places; None when ``den`` is 0."""
    return round(num / den, 4) if den else None


@dataclass
class Tally:
    """Counts and amounts (Decimal dollars) of the transactions a rule matched, or a version decided."""

    matched: int = 0
    amount: Decimal = Decimal(0)
    outcomes: Counter[str] = field(default_factory=Counter)
    caused: int = 0  # decisions whose outcome is the rule's own (it caused the outcome, alone or with others)
    labelled: int = 0
    bad: int = 0
    bad_amount: Decimal = Decimal(0)
    good: int = 0
    good_amount: Decimal = Decimal(0)
    labels: Counter[str] = field(default_factory=Counter)  # the bad labels, by label

    def add(self, amount: Decimal, outcome: str, own_outcome: str | None, label: str | None) -> None:
        """Count one transaction (``own_outcome``: the rule's outcome, None for a version)."""
        self.matched += 1
        self.amount += amount
        self.outcomes[outcome] += 1
        if own_outcome == outcome:
            self.caused += 1
        if label is None:
            return
        self.labelled += 1
        if verdict(label) == "bad":
            self.bad += 1
            self.bad_amount += amount
            self.labels[label] += 1
        else:
            self.good += 1
            self.good_amount += amount

    def base(self) -> dict[str, Any]:
        """The counts, JSON-ready (money as strings with two decimals)."""
        return {"matched": self.matched, "amount": _money(self.amount),
                "outcomes": {o: self.outcomes.get(o, 0) for o in OUTCOMES}, "labelled": self.labelled,
                "bad": self.bad, "bad_amount": _money(self.bad_amount), "good": self.good,
                "good_amount": _money(self.good_amount), "bad_labels": dict(sorted(self.labels.items()))}


@dataclass
class RuleStats:
    """One rule in one scope: its outcome, its tally; precision and recall against the scope's labels."""

    rule_id: str
    outcome: str
    tally: Tally = field(default_factory=Tally)

    def measures(self, scope: Tally) -> tuple[int, int, int, float | None, float | None]:
        """(hits, labelled matched, scope's positives, precision, recall): see the module's docstring."""
        flags = self.outcome in FLAGGING
        hits = self.tally.bad if flags else self.tally.good
        positives = scope.bad if flags else scope.good
        return hits, self.tally.labelled, positives, ratio(hits, self.tally.labelled), ratio(hits, positives)

    def to_dict(self, scope: Tally) -> dict[str, Any]:
        """JSON-ready form."""
        hits, _labelled, positives, precision, recall = self.measures(scope)
        return {"rule": self.rule_id, "outcome": self.outcome, **self.tally.base(),
                "caused": self.tally.caused, "predicts": "bad" if self.outcome in FLAGGING else "good",
                "hits": hits, "positives": positives, "precision": precision, "recall": recall}


@dataclass
class Scope:
    """A ruleset version (``version``/``content_hash`` set; ``role`` live or shadow) or all live versions
    of a ruleset (both None): its decisions' tally, and each rule's."""

    ruleset: str
    role: str
    version: int | None
    content_hash: str | None
    decided: Tally = field(default_factory=Tally)
    flagged: Tally = field(default_factory=Tally)  # decisions with outcome review or reject
    approved: Tally = field(default_factory=Tally)
    rules: dict[tuple[str, str], RuleStats] = field(default_factory=dict)

    def add(self, decision: dict[str, Any], amount: Decimal, label: str | None) -> None:
        """Count one decision (as recorded: ``rules.decision.Decision.to_dict``)."""
        outcome = str(decision.get("outcome"))
        self.decided.add(amount, outcome, None, label)
        (self.flagged if outcome in FLAGGING else self.approved).add(amount, outcome, None, label)
        matched = decision.get("matched") or []
        pairs = [(str(m.get("id")), str(m.get("outcome"))) for m in matched] or [(DEFAULT_RULE, outcome)]
        for rule_id, own in pairs:
            stats = self.rules.get((rule_id, own))
            if stats is None:
                stats = self.rules[(rule_id, own)] = RuleStats(rule_id, own)
            stats.tally.add(amount, outcome, own, label)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the scope, its decisions, flagged and approved measures, and its rules (most
        matched first)."""
        d = self.decided
        flag_hits, appr_hits = self.flagged.bad, self.approved.good
        return {
            "ruleset": self.ruleset, "role": self.role, "version": self.version, "content_hash": self.content_hash,
            "decided": d.base(),
            "flagged": {**self.flagged.base(), "precision": ratio(flag_hits, self.flagged.labelled),
                        "recall": ratio(flag_hits, d.bad)},
            "approved": {**self.approved.base(), "precision": ratio(appr_hits, self.approved.labelled),
                         "recall": ratio(appr_hits, d.good)},
            "rules": [s.to_dict(d) for s in sorted(self.rules.values(),
                                                  key=lambda s: (-s.tally.matched, s.rule_id, s.outcome))],
        }


@dataclass
class Report:
    """The rules report over a window: per ruleset (all its live versions), and per ruleset version."""

    since_ms: int | None
    until_ms: int | None
    transactions: int = 0
    labelled: int = 0
    rulesets: dict[str, Scope] = field(default_factory=dict)
    versions: dict[tuple[str, str, int, str], Scope] = field(default_factory=dict)

    def add(self, decision: dict[str, Any], shadow: dict[str, Any] | None, amount: Decimal,
            label: str | None) -> None:
        """Count one transaction: its decision, and its shadow decision when there was one."""
        self.transactions += 1
        self.labelled += label is not None
        for role, d in (("live", decision), ("shadow", shadow)):
            if not d or "outcome" not in d:
                continue
            name, version, digest = str(d.get("ruleset")), int(d.get("version") or 0), str(d.get("content_hash"))
            key = (role, name, version, digest)
            scope = self.versions.get(key)
            if scope is None:
                scope = self.versions[key] = Scope(name, role, version, digest)
            scope.add(d, amount, label)
            if role == "live":
                whole = self.rulesets.get(name)
                if whole is None:
                    whole = self.rulesets[name] = Scope(name, "live", None, None)
                whole.add(d, amount, label)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the window, the counts, ``rulesets`` (all versions) and ``versions``."""
        order = sorted(self.versions.values(), key=lambda s: (s.ruleset, s.role, s.version or 0, s.content_hash or ""))
        return {"since_ms": self.since_ms, "until_ms": self.until_ms, "transactions": self.transactions,
                "labelled": self.labelled,
                "rulesets": [self.rulesets[k].to_dict() for k in sorted(self.rulesets)],
                "versions": [s.to_dict() for s in order]}


def _rows(engine: Engine, since_ms: int | None, until_ms: int | None,
          batch: int = 5000) -> Iterator[tuple[str, Any, Any, Any, Any]]:
    """(transaction id, amount, decision JSON, shadow decision JSON, latest label) of every decided
    transaction first received in the window, ``batch`` at a time (keyset on the id: constant memory)."""
    tx, lb = t.transactions.c, t.labels.c
    # The latest label of each transaction: one step down the (transaction_id, id) index per row, so a
    # page costs the same however many labels the ledger holds.
    latest = (select(lb.label).where(lb.transaction_id == tx.transaction_id).order_by(lb.id.desc()).limit(1)
              .correlate(t.transactions).scalar_subquery())
    base = (select(tx.transaction_id, tx.amount, tx.record["decision"].as_string(),
                   tx.record["shadow_decision"].as_string(), latest)
            .where(tx.outcome.is_not(None)).order_by(tx.transaction_id).limit(batch))
    if since_ms is not None:
        base = base.where(tx.created_at >= since_ms / 1000)
    if until_ms is not None:
        base = base.where(tx.created_at <= until_ms / 1000)
    after: str | None = None
    while True:
        q = base if after is None else base.where(tx.transaction_id > after)
        try:
            with engine.connect() as conn:
                rows = list(conn.execute(q))
        except SQLAlchemyError as exc:
            raise unavailable("read the decisions and labels", exc) from None
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1][0]


def _decision(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text) if isinstance(text, str) else text
    return value if isinstance(value, dict) else None


def rules_report(engine: Engine, *, since_ms: int | None = None, until_ms: int | None = None) -> Report:
    """The rules report over the transactions first received in [since_ms, until_ms] (epoch ms; None:
    unbounded): see the module's docstring for what is counted and how. LedgerUnavailable when the
    database fails."""
    report = Report(since_ms, until_ms)
    for _txid, amount, decision, shadow, label in _rows(engine, since_ms, until_ms):
        live = _decision(decision)
        if live is None:
            continue
        report.add(live, _decision(shadow), Decimal(amount) if amount is not None else Decimal(0), label)
    return report
