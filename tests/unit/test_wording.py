"""Messages people read: counted nouns agree with their number, and no Python type name reaches a
person who sent JSON or wrote YAML (an amount's error least of all)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from rules.errors import FactError
from rules.facts import prepare
from rules.money import MoneyError, to_cents
from worker.errors import NotificationError
from worker.notification import parse_notification
from worker.wording import a, noun_for, plural

# Words that only mean something to a Python programmer.
PYTHON = re.compile(r"\b(Decimal|float|int|str|dict|NoneType|InvalidOperation|MoneyError|ValueError|"
                    r"Input should|TypeError|object of type)\b")
BASE = {"transactionId": "wdword0001", "vipCardNumber": "7210695258", "patronId": "P0001234",
        "transactionType": "withdraw", "amount": "10.00"}


def test_plural_agrees_with_the_count() -> None:
    """1 notification, 0 and 2 notifications; irregular plurals given."""
    assert [plural(1, "notification"), plural(0, "notification"), plural(2, "entry", "entries")] == [
        "1 notification", "0 notifications", "2 entries"]


def test_counts_group_thousands_and_nouns_take_their_article() -> None:
    """1 entry (never "1 entries"), 1,200 entries grouped; the noun alone for an aligned column; a viewer,
    an admin, an approval."""
    assert plural(1, "entry", "entries", grouped=True) == "1 entry"
    assert plural(1200, "entry", "entries", grouped=True) == "1,200 entries"
    assert [noun_for(1, "entry", "entries"), noun_for(3, "row")] == ["entry", "rows"]
    assert [a("viewer"), a("admin"), a("approval"), a("rejection")] == [
        "a viewer", "an admin", "an approval", "a rejection"]


@pytest.mark.parametrize(("field", "value"), [
    ("amount", "lots"), ("amount", [1]), ("amount", True), ("amount", {"value": 1}),
    ("instantPaymentEligible", "maybe"), ("transactionId", "short"), ("transactionId", ["x"]),
    ("operatorLimits", 5), ("operatorLimits", {"maxWithdraw": "lots"}),
])
def test_notification_problems_name_no_python_type(field: str, value: Any) -> None:
    """A bad field is named with what it must be, in JSON's words."""
    with pytest.raises(NotificationError) as info:
        parse_notification({**BASE, field: value}, "withdraw")
    assert info.value.field.split(".")[0] == field and not PYTHON.search(str(info.value)), str(info.value)


@pytest.mark.parametrize("value", ["abc", "1.234", "NaN", "1e400"])
def test_an_amount_fact_error_names_the_value_not_a_class(value: str) -> None:
    """A fact that is no exact amount is refused naming the fact and what to give (never its value, nor
    InvalidOperation)."""
    with pytest.raises(FactError) as info:
        prepare({"amount": value})
    message = str(info.value)
    assert message.startswith("fact 'amount' ") and "e.g. 61.90" in message, message
    assert not PYTHON.search(message) and value not in message


def test_a_money_error_quotes_the_value_as_written() -> None:
    """'abc' is quoted as given, not as Python's repr of a Decimal."""
    with pytest.raises(MoneyError, match=r"^'abc' is not an amount; give dollars"):
        to_cents("abc")
