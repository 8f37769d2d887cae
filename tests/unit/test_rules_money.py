"""Money at the boundaries: Decimal amounts compared exactly through durable_rules (in integer cents)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from rules.book import RuleBook
from rules.durable import DurableEngine
from rules.errors import FactError
from rules.facts import prepare
from rules.loader import parse_ruleset
from rules.money import MoneyError, to_cents

D = Decimal


def _holds(when: str, facts: dict[str, Any]) -> bool:
    """Whether a one-rule withdraw ruleset with this condition matches, through durable_rules."""
    text = f"ruleset: withdraw\nversion: 1\nrules:\n  - id: r\n    when: {when}\n    outcome: review\n"
    book = RuleBook([parse_ruleset(text.encode(), "withdraw.yaml")], DurableEngine)
    return book.decide("withdraw", facts).matched_ids == ("r",)


@pytest.mark.parametrize(("op", "expected"), [
    ("lt", False), ("lte", True), ("eq", True), ("ne", False), ("gte", True), ("gt", False),
])
def test_ten_dollars_against_a_ten_dollar_literal(op: str, expected: bool) -> None:
    """10.00 against the literal 10.00: equal, so lt is false and lte is true."""
    assert _holds(f"{{amount: {{{op}: 10.00}}}}", {"amount": D("10.00")}) is expected


@pytest.mark.parametrize(("op", "expected"), [
    ("lt", False), ("lte", True), ("eq", True), ("ne", False), ("gte", True), ("gt", False),
])
def test_maximum_withdrawal_against_the_maximum_limit_field(op: str, expected: bool) -> None:
    """999999.99 against a 999999.99 limit given as a fact: exactly equal."""
    facts = {"amount": D("999999.99"), "limits": {"max_withdraw": D("999999.99")}}
    assert _holds(f"{{amount: {{{op}: {{field: limits.max_withdraw}}}}}}", facts) is expected


def test_decimal_sum_of_a_tenth_and_two_tenths_equals_three_tenths() -> None:
    """A Decimal fact 0.1 + 0.2 equals the literal 0.3 (no float drift)."""
    assert _holds("{amount: {eq: 0.3}}", {"amount": D("0.1") + D("0.2")})
    assert not _holds("{amount: {gt: 0.3}}", {"amount": D("0.1") + D("0.2")})


@pytest.mark.parametrize(("amount", "lt", "gt"), [("9.99", True, False), ("10.01", False, True)])
def test_one_cent_either_side_of_the_minimum(amount: str, lt: bool, gt: bool) -> None:
    """One cent under 10.00 is below it, one cent over is above it."""
    facts = {"amount": D(amount), "limits": {"min_withdraw": D("10.00")}}
    assert _holds("{amount: {lt: {field: limits.min_withdraw}}}", facts) is lt
    assert _holds("{amount: {gt: {field: limits.min_withdraw}}}", facts) is gt


@pytest.mark.parametrize("amount", ["999999.98", "1000000.00"])
def test_one_cent_either_side_of_the_maximum_is_not_equal(amount: str) -> None:
    """One cent either side of 999999.99 is not equal to it."""
    facts = {"amount": D(amount), "limits": {"max_withdraw": D("999999.99")}}
    assert not _holds("{amount: {eq: {field: limits.max_withdraw}}}", facts)


def test_largest_exact_amounts_still_differ_by_one_cent() -> None:
    """At 2**53 - 1 cents, the largest amount compared exactly, one cent less is still less."""
    facts = {"amount": D("90071992547409.91"), "wallet": {"balance": D("90071992547409.90")}}
    assert _holds("{amount: {gt: {field: wallet.balance}}}", facts)


def test_integer_float_and_string_amounts_are_the_same_money() -> None:
    """10, 10.0, '10.00' and Decimal('10.000') are all 1000 cents."""
    cents = {prepare({"amount": v})["amount"] for v in (10, 10.0, "10.00", D("10.000"))}
    assert cents == {1000}


@pytest.mark.parametrize("path", ["amount", "wallet.balance", "limits.max_withdraw", "velocity.amount_24h"])
def test_a_fact_with_a_fraction_of_a_cent_is_refused_naming_the_path(path: str) -> None:
    """An amount such as 10.001 is a FactError that names the path and never shows the value."""
    *parents, leaf = path.split(".")
    facts: dict[str, Any] = {leaf: D("12345.678")}
    for parent in reversed(parents):
        facts = {parent: facts}
    with pytest.raises(FactError) as info:
        prepare(facts)
    assert f"'{path}'" in str(info.value)
    assert "12345" not in str(info.value) and "678" not in str(info.value)


def test_a_float_sum_with_binary_drift_is_refused_not_rounded() -> None:
    """The float 0.1 + 0.2 (0.30000000000000004) is refused rather than rounded to 0.30."""
    with pytest.raises(FactError, match="'amount'"):
        prepare({"amount": 0.1 + 0.2})


def test_a_count_fact_must_be_a_whole_number() -> None:
    """A count fact of 2.5 is refused, naming the path."""
    with pytest.raises(FactError, match=r"'velocity\.count_1h'"):
        prepare({"velocity": {"count_1h": 2.5}})


@pytest.mark.parametrize("text", ["1.00000000000000000000000000001", "0.001", "1E-99999999"])
def test_a_fraction_of_a_cent_beyond_decimal_precision_is_refused(text: str) -> None:
    """A fraction of a cent is found at any depth, past Decimal's 28 digits of arithmetic."""
    with pytest.raises(MoneyError, match="fraction of a cent"):
        to_cents(D(text))


@pytest.mark.parametrize("text", ["1E+99999999", "90071992547409.92"])
def test_an_amount_past_exact_comparison_is_refused_at_once(text: str) -> None:
    """An exponent far beyond any amount is refused without building the number."""
    with pytest.raises(MoneyError, match="too large"):
        to_cents(D(text))


@pytest.mark.parametrize(("text", "cents"), [("0E+999999999", 0), ("10.330", 1033), ("1E+2", 10000),
                                             ("-5.5", -550), ("90071992547409.91", 2**53 - 1)])
def test_exact_amounts_in_any_notation_convert(text: str, cents: int) -> None:
    """Trailing zeros, exponents and signs convert exactly; the largest exact amount passes."""
    assert to_cents(D(text)) == cents
