"""Explain: for each unmatched rule, the first condition that failed and the value the facts had."""

from __future__ import annotations

from decimal import Decimal

from rules.book import RuleBook
from rules.explain import explain
from rules.loader import parse_ruleset
from rules.model import RuleSet

TEXT = """\
ruleset: withdraw
version: 1
rules:
  - id: small-ach
    when:
      all:
        - fund_transfer_type: ACH
        - amount: {lte: 500}
    outcome: approve
  - id: over-balance
    when: {amount: {gt: {field: wallet.balance}}}
    outcome: reject
  - id: inp-or-huge
    when:
      any:
        - fund_transfer_type: INP
        - amount: {gt: 100000}
    outcome: review
  - id: known-count
    when: {velocity.count_24h: {gte: 3}}
    outcome: review
"""


def _ruleset() -> RuleSet:
    return parse_ruleset(TEXT.encode(), "withdraw.yaml")


FACTS = {"fund_transfer_type": "ACH", "amount": Decimal("612.3"), "wallet": {"balance": Decimal("1000")}}


def test_first_failing_item_of_an_all_is_shown_with_its_line_and_dollars() -> None:
    """In an all, the first item that fails is named, at its line, with the money actual in dollars."""
    failure = explain(_ruleset(), FACTS).rules[0].failure
    assert failure is not None
    assert (failure.line, failure.condition, failure.actual) == (8, "amount lte 500", "amount = 612.30")


def test_field_comparison_shows_both_actual_values() -> None:
    """A failed {field: ...} comparison shows the values of both facts."""
    failure = explain(_ruleset(), FACTS).rules[1].failure
    assert failure is not None
    assert failure.condition == "amount gt field wallet.balance"
    assert failure.actual == "amount = 612.30, wallet.balance = 1000.00"


def test_failed_any_shows_every_alternative() -> None:
    """A failed any says no alternative held and shows each alternative's actual value."""
    failure = explain(_ruleset(), FACTS).rules[2].failure
    assert failure is not None
    assert failure.line == 15
    assert failure.actual == "no alternative held (fund_transfer_type = 'ACH'; amount = 612.30)"


def test_an_unknown_fact_is_shown_as_unknown() -> None:
    """A comparison that failed because the fact is unknown says so."""
    failure = explain(_ruleset(), FACTS).rules[3].failure
    assert failure is not None and failure.actual == "velocity.count_24h is unknown"


def test_a_matched_rule_has_no_failure() -> None:
    """A rule that matched is marked matched with no failure."""
    row = explain(_ruleset(), {**FACTS, "amount": Decimal("1000.01")}).rules[1]
    assert row.matched and row.failure is None


def test_explained_decision_is_the_engines_decision() -> None:
    """The decision explain reports is the one durable_rules gives for the same facts."""
    assert explain(_ruleset(), FACTS).decision == RuleBook([_ruleset()]).decide("withdraw", FACTS)
