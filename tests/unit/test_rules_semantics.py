"""What a ruleset decides, the same through durable_rules and through the plain-Python oracle."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from rules.book import Engine, RuleBook
from rules.decision import Decision, MatchedRule
from rules.durable import DurableEngine, OracleEngine
from rules.loader import parse_ruleset


@pytest.fixture(params=[DurableEngine, OracleEngine], ids=["durable_rules", "oracle"])
def engine(request: pytest.FixtureRequest) -> type[Engine]:
    """Each test runs once per evaluator."""
    return request.param  # type: ignore[no-any-return]


def _book(engine: type[Engine], rules: str, default: str = "review", freeze_on: str = "[]") -> RuleBook:
    """A withdraw book from rule entries written as YAML list items."""
    text = f"ruleset: withdraw\nversion: 3\ndefault: {default}\nfreeze_on: {freeze_on}\nrules:\n{rules}"
    return RuleBook([parse_ruleset(text.encode(), "withdraw.yaml")], engine)


def _rule(rule_id: str, when: str, outcome: str = "review") -> str:
    return f"  - id: {rule_id}\n    description: {rule_id} holds\n    when: {when}\n    outcome: {outcome}\n"


def _holds(engine: type[Engine], when: str, facts: dict[str, Any]) -> bool:
    """Whether a one-rule ruleset with this condition matches the facts."""
    return _book(engine, _rule("r", when)).decide("withdraw", facts).matched_ids == ("r",)


def test_most_severe_outcome_wins(engine: type[Engine]) -> None:
    """With approve, review and reject rules all matching, the outcome is reject."""
    book = _book(engine, _rule("ok", "{amount: {gt: 1}}", "approve") + _rule("look", "{amount: {gt: 2}}", "review")
                 + _rule("deny", "{amount: {gt: 3}}", "reject"))
    assert book.decide("withdraw", {"amount": 10}).outcome == "reject"


def test_review_beats_approve(engine: type[Engine]) -> None:
    """With approve and review rules matching, the outcome is review."""
    book = _book(engine, _rule("ok", "{amount: {gt: 1}}", "approve") + _rule("look", "{amount: {gt: 2}}", "review"))
    assert book.decide("withdraw", {"amount": 10}).outcome == "review"


def test_no_match_gives_the_default(engine: type[Engine]) -> None:
    """When no rule matches, the outcome is the ruleset's default and used_default is set."""
    book = _book(engine, _rule("big", "{amount: {gt: 100}}", "approve"), default="reject")
    decision = book.decide("withdraw", {"amount": 10})
    assert (decision.outcome, decision.used_default, decision.matched) == ("reject", True, ())


def test_every_matching_rule_is_collected_in_file_order(engine: type[Engine]) -> None:
    """All matching rules are reported, with description and outcome, in file order; others are not."""
    book = _book(engine, _rule("a", "{amount: {gt: 1}}", "approve") + _rule("b", "{amount: {gt: 100}}", "reject")
                 + _rule("c", "{fund_transfer_type: ACH}", "review") + _rule("d", "{amount: {lt: 50}}", "approve"))
    decision = book.decide("withdraw", {"amount": 10, "fund_transfer_type": "ACH"})
    assert decision.matched == (
        MatchedRule("a", "a holds", "approve"), MatchedRule("c", "c holds", "review"),
        MatchedRule("d", "d holds", "approve"),
    )
    assert decision.used_default is False


@pytest.mark.parametrize("when", ["{wallet.balance: {lt: 100}}", "{wallet.balance: {gte: 0}}",
                                  "{fund_transfer_type: {ne: ACH}}", "{account.found: false}",
                                  "{fund_transfer_type: {in: [ACH, SDA]}}"])
def test_comparison_with_a_missing_fact_is_false(engine: type[Engine], when: str) -> None:
    """Any comparison with a fact that is missing (or null) is false, ne included."""
    assert not _holds(engine, when, {"amount": 10})
    assert not _holds(engine, when, {"amount": 10, "wallet": {"balance": None}, "fund_transfer_type": None,
                                     "account": {"found": None}})


def test_field_comparison_with_a_null_right_side_is_false(engine: type[Engine]) -> None:
    """{field: ...} comparing with a null fact on the right is false, for every operator."""
    for op in ("eq", "ne", "gt", "gte", "lt", "lte"):
        assert not _holds(engine, f"{{amount: {{{op}: {{field: wallet.balance}}}}}}",
                          {"amount": 10, "wallet": {"balance": None}}), op


def test_field_comparison_with_a_null_left_side_is_false(engine: type[Engine]) -> None:
    """{field: ...} is false when the left fact is null and the right one is known."""
    for op in ("eq", "ne", "gt", "gte", "lt", "lte"):
        assert not _holds(engine, f"{{amount: {{{op}: {{field: wallet.balance}}}}}}",
                          {"wallet": {"balance": 10}}), op


def test_field_comparison_with_both_sides_null_is_false(engine: type[Engine]) -> None:
    """{field: ...} is false when both facts are null: unknown never equals unknown."""
    for op in ("eq", "ne", "gt", "gte", "lt", "lte"):
        assert not _holds(engine, f"{{amount: {{{op}: {{field: wallet.balance}}}}}}", {}), op


@pytest.mark.parametrize("when", ["{not: {wallet.balance: {lt: 100}}}", "{not: {fund_transfer_type: {ne: ACH}}}",
                                  "{not: {amount: {gt: {field: wallet.balance}}}}",
                                  "{not: {wallet.balance: {lte: {field: amount}}}}"])
def test_not_of_a_comparison_with_a_null_fact_is_true(engine: type[Engine], when: str) -> None:
    """`not` of a comparison involving an unknown fact (either side) holds."""
    assert _holds(engine, when, {"amount": 10})


def test_not_of_a_comparison_with_known_facts_is_its_complement(engine: type[Engine]) -> None:
    """With both sides known, `not (a > b)` holds exactly when a <= b."""
    when = "{not: {amount: {gt: {field: wallet.balance}}}}"
    assert _holds(engine, when, {"amount": 10, "wallet": {"balance": 10}})
    assert not _holds(engine, when, {"amount": "10.01", "wallet": {"balance": 10}})


@pytest.mark.parametrize(("when", "facts", "expected"), [
    ("{wallet.balance: {exists: true}}", {"wallet": {"balance": 0}}, True),
    ("{wallet.balance: {exists: true}}", {"wallet": {"balance": None}}, False),
    ("{wallet.balance: {exists: true}}", {}, False),
    ("{wallet.balance: {exists: false}}", {}, True),
    ("{wallet.balance: {exists: false}}", {"wallet": {"balance": 0}}, False),
    ("{account.found: {exists: true}}", {"account": {"found": False}}, True),
    ("{not: {bank.found: {exists: false}}}", {"bank": {"found": False}}, True),
])
def test_exists(engine: type[Engine], when: str, facts: dict[str, Any], expected: bool) -> None:
    """exists: true holds for any known value (0 and false included); exists: false only for unknown."""
    assert _holds(engine, when, facts) is expected


@pytest.mark.parametrize(("value", "not_in", "not_of_in"), [
    ("ACH", False, False),
    ("INP", True, True),
    (None, False, True),
])
def test_not_in_differs_from_not_of_in_only_for_null(engine: type[Engine], value: str | None,
                                                     not_in: bool, not_of_in: bool) -> None:
    """`x not_in [..]` is false for unknown x; `not (x in [..])` is true for it."""
    facts = {"fund_transfer_type": value}
    assert _holds(engine, "{fund_transfer_type: {not_in: [ACH, SDA]}}", facts) is not_in
    assert _holds(engine, "{not: {fund_transfer_type: {in: [ACH, SDA]}}}", facts) is not_of_in


@pytest.mark.parametrize(("value", "expected"), [("ACH", True), ("INP", False), (None, True)])
def test_not_of_not_in_holds_for_an_unknown_fact(engine: type[Engine], value: str | None, expected: bool) -> None:
    """`not (x not_in [..])` holds when x is in the list, and when x is unknown (not_in of it is false)."""
    assert _holds(engine, "{not: {fund_transfer_type: {not_in: [ACH, SDA]}}}",
                  {"fund_transfer_type": value}) is expected


NESTED = ("{all: [{any: [{fund_transfer_type: INP}, {amount: {gt: 1000}}]},"
          " {not: {all: [{bank.found: true}, {not: {bank.instant_payment_eligible: false}}]}}]}")


@pytest.mark.parametrize(("facts", "expected"), [
    ({"fund_transfer_type": "INP", "bank": {"found": False}}, True),
    ({"fund_transfer_type": "INP", "bank": {"found": True, "instant_payment_eligible": True}}, False),
    ({"fund_transfer_type": "INP", "bank": {"found": True, "instant_payment_eligible": False}}, True),
    ({"fund_transfer_type": "ACH", "amount": 500, "bank": {"found": False}}, False),
    ({"fund_transfer_type": "ACH", "amount": 5000}, True),
    ({"amount": 5000, "bank": {"found": True}}, False),
])
def test_nested_all_any_not(engine: type[Engine], facts: dict[str, Any], expected: bool) -> None:
    """all/any/not nest to any depth with the usual meaning (nulls: comparisons false, their `not` true)."""
    assert _holds(engine, NESTED, facts) is expected


@pytest.mark.parametrize(("when", "facts", "expected"), [
    ("{limits.max_withdraw: {gte: {field: account.limit_amount}}}",
     {"limits": {"max_withdraw": 500}, "account": {"limit_amount": 500}}, True),
    ("{limits.max_withdraw: {gt: {field: account.limit_amount}}}",
     {"limits": {"max_withdraw": 500}, "account": {"limit_amount": 500}}, False),
    ("{velocity.count_1h: {lt: {field: velocity.count_24h}}}", {"velocity": {"count_1h": 2, "count_24h": 3}}, True),
    ("{bank.instant_payment_eligible: {eq: {field: instant_payment_eligible}}}",
     {"bank": {"instant_payment_eligible": False}, "instant_payment_eligible": False}, True),
    ("{bank.instant_payment_eligible: {ne: {field: instant_payment_eligible}}}",
     {"bank": {"instant_payment_eligible": True}, "instant_payment_eligible": False}, True),
    ("{bank_name: {eq: {field: transaction_id}}}", {"bank_name": "X", "transaction_id": "X"}, True),
    ("{operator_limits.wallet_balance: {ne: {field: wallet.balance}}}",
     {"operator_limits": {"wallet_balance": "20.00"}, "wallet": {"balance": "20"}}, False),
])
def test_field_to_field_comparisons_on_nested_paths(engine: type[Engine], when: str, facts: dict[str, Any],
                                                    expected: bool) -> None:
    """{field: ...} compares two facts, nested paths included, for money, counts, bools and strings."""
    assert _holds(engine, when, facts) is expected


def test_freeze_follows_freeze_on(engine: type[Engine]) -> None:
    """Decision.freeze is true exactly when the outcome is listed in freeze_on."""
    book = _book(engine, _rule("look", "{amount: {gt: 100}}", "review") + _rule("ok", "{amount: {gt: 0}}", "approve"),
                 freeze_on="[review]")
    assert book.decide("withdraw", {"amount": 500}).freeze is True
    assert book.decide("withdraw", {"amount": 50}).freeze is False


def test_decision_records_the_ruleset_version(engine: type[Engine]) -> None:
    """A decision names the ruleset, its version and its content hash."""
    book = _book(engine, _rule("ok", "{amount: {gt: 0}}", "approve"))
    decision = book.decide("withdraw", {"amount": 1})
    assert (decision.ruleset, decision.version, decision.content_hash) == (
        "withdraw", 3, book.rulesets["withdraw"].content_hash)


def test_decision_round_trips_through_json(engine: type[Engine]) -> None:
    """Decision.from_dict(json of to_dict()) gives back an equal Decision."""
    book = _book(engine, _rule("look", "{amount: {gt: 100}}", "review") + _rule("ok", "{amount: {gt: 0}}", "approve"),
                 freeze_on="[review]")
    decision = book.decide("withdraw", {"amount": Decimal("500.00")})
    assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision
