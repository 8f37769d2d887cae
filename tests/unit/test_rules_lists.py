"""The list operators in the rule language: loading, checking names, durable_rules and the oracle, tests, explain."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.book import RuleBook
from rules.durable import DurableEngine, OracleEngine
from rules.errors import RuleError, RuleFilesInvalid
from rules.explain import explain
from rules.lists import EntryError, NamedList, check_lists, normalize
from rules.loader import parse_ruleset
from rules.model import Compare, ListRef
from rules.testing import run_tests

FILE = "rules/withdraw.yaml"
RULES = """ruleset: withdraw
version: 3
default: approve
rules:
  - id: blocked-card
    when: {vip_card_number: {in_list: blocked-cards}}
    outcome: reject
  - id: risky-network
    when: {location: {in_list: risky-nets}}
    outcome: review
  - id: unlisted-bank
    when: {not: {bank_name: {in_list: known-banks}}}
    outcome: review
  - id: trusted-patron
    when: {patron_id: {not_in_list: watch-patrons}}
    outcome: approve
"""
KINDS = {"blocked-cards": "card", "risky-nets": "cidr", "known-banks": "bank", "watch-patrons": "patron"}


def _lists(**versions: int) -> dict[str, NamedList]:
    return {
        "blocked-cards": NamedList.of("blocked-cards", "card", ["7210695258", "1234567"], versions.get("cards", 4)),
        "risky-nets": NamedList.of("risky-nets", "cidr", ["10.0.0.0/8", "203.0.113.7", "2001:db8::/32"], 2),
        "known-banks": NamedList.of("known-banks", "bank", ["Chase Bank", "Fifth Third Bank"], 1),
        "watch-patrons": NamedList.of("watch-patrons", "patron", ["P-77"], 9),
    }


@pytest.fixture(params=[DurableEngine, OracleEngine], ids=["durable_rules", "oracle"])
def book(request: pytest.FixtureRequest) -> RuleBook:
    return RuleBook([parse_ruleset(RULES.encode(), FILE)], request.param)


def test_in_list_loads_as_a_comparison_with_a_named_list() -> None:
    """`{vip_card_number: {in_list: blocked-cards}}` is a Compare whose value is the list's name."""
    ruleset = parse_ruleset(RULES.encode(), FILE)
    first = ruleset.rules[0].when
    assert first == Compare("vip_card_number", "in_list", ListRef("blocked-cards"), 6)
    assert ruleset.list_names == ("blocked-cards", "known-banks", "risky-nets", "watch-patrons")


@pytest.mark.parametrize(("when", "problem"), [
    ("{amount: {in_list: big}}", "'amount' cannot be tested against a list; in_list takes one of bank_name, "
                                 "bank_routing_number, location, patron_id, vip_card_number"),
    ("{vip_card_number: {in_list: Blocked Cards}}", "'vip_card_number': in_list takes a list's name (1 to 64 "
                                                   "lower-case letters, digits, '-' or '_', starting with a "
                                                   "letter or digit)"),
    ("{vip_card_number: {not_in_list: [a, b]}}", "'vip_card_number': not_in_list takes a list's name"),
])
def test_a_malformed_list_condition_is_refused_at_its_line(when: str, problem: str) -> None:
    """A list operator on a fact no list holds, or without a plain list name, is refused at file:line, rule."""
    text = f"ruleset: withdraw\nversion: 1\nrules:\n  - id: r1\n    when: {when}\n    outcome: review\n"
    with pytest.raises(RuleFilesInvalid) as info:
        parse_ruleset(text.encode(), FILE)
    (only,) = info.value.problems
    assert only.render().startswith(f"{FILE}:5: rule 'r1': {problem}")


def test_check_lists_names_an_unknown_list_and_a_list_of_the_wrong_kind() -> None:
    """`rules check` against the known lists: an unknown name and a kind mismatch, each with file:line and rule."""
    ruleset = parse_ruleset(RULES.encode(), FILE)
    problems = check_lists(ruleset, {"blocked-cards": "card", "risky-nets": "card", "watch-patrons": "patron"})
    assert [p.render() for p in problems] == [
        f"{FILE}:9: rule 'risky-network': list 'risky-nets' holds VIP card numbers; 'location' is tested "
        "against a list of kind cidr",
        f"{FILE}:12: rule 'unlisted-bank': unknown list 'known-banks' (vipflow lists show names them all; "
        "vipflow lists create makes one)",
    ]
    assert check_lists(ruleset, KINDS) == []


def test_a_card_on_the_list_is_rejected_and_the_decision_records_every_list_version(book: RuleBook) -> None:
    """A blocked card is rejected; the decision names each list the ruleset uses, at the version given."""
    facts = {"vip_card_number": "7210695258", "bank_name": "Chase Bank", "patron_id": "P-1"}
    decision = book.decide("withdraw", facts, _lists(cards=7))
    assert decision.outcome == "reject"
    assert decision.matched_ids == ("blocked-card", "trusted-patron")
    assert decision.lists == {"blocked-cards": 7, "known-banks": 1, "risky-nets": 2, "watch-patrons": 9}
    assert decision.to_dict()["lists"] == {"blocked-cards": 7, "known-banks": 1, "risky-nets": 2,
                                           "watch-patrons": 9}


@pytest.mark.parametrize(("location", "matched"), [
    ("10.200.3.4", True),  # inside 10.0.0.0/8
    ("203.0.113.7", True),  # the single address
    ("203.0.113.8", False),
    ("2001:db8:1::5", True),  # inside 2001:db8::/32
    ("::ffff:10.0.0.1", True),  # an IPv4-mapped IPv6 address is its IPv4 address
    ("11.0.0.1", False),
])
def test_an_ip_fact_matches_a_cidr_list_by_range(book: RuleBook, location: str, matched: bool) -> None:
    """`location` against a CIDR list matches when the address lies inside any range on it."""
    decision = book.decide("withdraw", {"location": location, "bank_name": "Chase Bank"}, _lists())
    assert ("risky-network" in decision.matched_ids) is matched


def test_an_unknown_or_unreadable_fact_is_on_no_list_and_off_none(book: RuleBook) -> None:
    """Unknown (or a location that is no address): in_list and not_in_list are both false, `not in_list` true."""
    decision = book.decide("withdraw", {"location": "somewhere"}, _lists())
    assert decision.matched_ids == ("unlisted-bank",)  # bank_name unknown: not (in_list) holds
    assert "trusted-patron" not in decision.matched_ids  # patron_id unknown: not_in_list does not hold


def test_bank_names_match_without_regard_to_case_or_spacing(book: RuleBook) -> None:
    """A bank name on the list matches whatever its case and runs of spaces."""
    decision = book.decide("withdraw", {"bank_name": "  FIFTH   third bank "}, _lists())
    assert "unlisted-bank" not in decision.matched_ids


def test_a_list_the_caller_did_not_give_is_an_error_never_a_default(book: RuleBook) -> None:
    """Deciding without a list the rules name raises RuleError naming it (the worker sends that to review)."""
    lists = _lists()
    del lists["risky-nets"]
    with pytest.raises(RuleError, match="list 'risky-nets', which is not known"):
        book.decide("withdraw", {"vip_card_number": "7210695258"}, lists)


@pytest.mark.parametrize(("kind", "value", "stored"), [
    ("card", " 7210695258 ", "7210695258"),
    ("routing", "021000021", "021000021"),
    ("patron", " P-1 ", "P-1"),
    ("bank", "  Chase   BANK ", "chase bank"),
    ("cidr", "203.0.113.7", "203.0.113.7/32"),
    ("cidr", "2001:DB8::/32", "2001:db8::/32"),
    ("cidr", "::ffff:192.0.2.0/120", "192.0.2.0/24"),
])
def test_entries_are_stored_in_one_canonical_form(kind: str, value: str, stored: str) -> None:
    """Each kind's entries are normalized once, so that a lookup is one set membership."""
    assert normalize(kind, value) == stored


@pytest.mark.parametrize(("kind", "value", "problem"), [
    ("card", "4111-1111", "a VIP card number is 6 to 19 digits"),
    ("routing", "12345", "a bank routing number is 8 or 9 digits"),
    ("cidr", "10.0.0.1/8", "an IP range has no host bits set past its prefix (did you mean 10.0.0.0/8?)"),
    ("cidr", "example.com", "an IP range is an address or address/prefix, e.g. 203.0.113.0/24"),
    ("patron", "", "a patron id is 1 to 64 characters"),
])
def test_a_bad_entry_is_refused_saying_what_form_is_expected(kind: str, value: str, problem: str) -> None:
    """An entry not of its list's form is refused with the form expected (never the value itself)."""
    with pytest.raises(EntryError) as info:
        normalize(kind, value)
    assert str(info.value) == problem


def test_rule_tests_give_their_own_list_entries(tmp_path: Path) -> None:
    """A test file's `lists:` (top level, then per case) is what its cases decide against; unnamed lists are empty."""
    (tmp_path / "withdraw.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "withdraw_test.yaml").write_text("""ruleset: withdraw
lists:
  known-banks: [Chase Bank]
cases:
  - name: a listed card is rejected
    lists: {blocked-cards: ["7210695258"]}
    facts: {vip_card_number: "7210695258", bank_name: Chase Bank}
    expect: {outcome: reject, matched: [blocked-card]}
  - name: the same card is approved where the case's list is empty
    facts: {vip_card_number: "7210695258", bank_name: chase bank, patron_id: P-1}
    expect: {outcome: approve, matched: [trusted-patron]}
  - name: a case naming a list the rules do not use is an error
    lists: {nope: []}
    facts: {}
    expect: {outcome: approve}
""", encoding="utf-8")
    report = run_tests([tmp_path])
    assert [r.passed for r in report.results] == [True, True, False]
    assert report.results[2].error == "case lists names list(s) the ruleset does not use: nope"


def test_explain_says_whether_the_fact_is_on_the_list_and_which_version() -> None:
    """An unmatched list rule is explained with the fact, the list's verdict and its version."""
    ruleset = parse_ruleset(RULES.encode(), FILE)
    result = explain(ruleset, {"vip_card_number": "1111111", "bank_name": "Chase Bank"}, _lists(cards=5))
    row = next(r for r in result.rules if r.rule.id == "blocked-card")
    assert row.failure is not None
    assert row.failure.condition == "vip_card_number in_list blocked-cards"
    assert row.failure.actual == "vip_card_number = '1111111', which is not on list blocked-cards v5"
    assert result.decision.lists["blocked-cards"] == 5


def test_explain_names_the_range_that_holds_an_address() -> None:
    """A failed not-on-a-cidr-list condition names the narrowest range holding the address; NamedList.holding
    matches by range as the rules do (IPv4 written as IPv6 too), and by the stored form for other kinds."""
    ruleset = parse_ruleset((RULES + "  - id: clean-network\n    when: {location: {not_in_list: risky-nets}}\n"
                             "    outcome: approve\n").encode(), FILE)
    result = explain(ruleset, {"location": "10.9.9.9"}, _lists())
    row = next(r for r in result.rules if r.rule.id == "clean-network")
    assert row.failure is not None
    assert row.failure.actual == "location = '10.9.9.9', which is on list risky-nets v2 (inside its range 10.0.0.0/8)"
    nets = NamedList.of("n", "cidr", ["10.0.0.0/8", "10.9.0.0/16", "::/0"])
    assert (nets.holding("10.9.9.9"), nets.holding("::ffff:10.1.2.3"), nets.holding("3000::1")) == (
        "10.9.0.0/16", "10.0.0.0/8", "::/0")
    assert nets.holding("11.0.0.1") is None and nets.holding("not an address") is None
    assert _lists()["known-banks"].holding(" chase   BANK") == "chase bank"


def test_a_list_of_another_kind_than_the_fact_is_an_error(book: RuleBook) -> None:
    """A list that holds other things than the fact tested (a card list for location) is refused, not matched."""
    lists = _lists()
    lists["risky-nets"] = NamedList.of("risky-nets", "card", ["1234567"], 1)
    with pytest.raises(RuleError, match="list 'risky-nets' holds VIP card numbers; the rules test 'location'"):
        book.decide("withdraw", {"location": "10.0.0.1"}, lists)
