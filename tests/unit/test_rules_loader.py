"""The rule-file loader: every refusal names the file, the line and the rule id."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from rules.errors import RuleFileError, RuleFilesInvalid
from rules.loader import load_ruleset_file, parse_ruleset
from rules.model import Compare, FieldRef

FILE = "rules/withdraw.yaml"
HEAD = "ruleset: withdraw\nversion: 1\nrules:\n"


def _problems(text: str, file: str = FILE) -> list[RuleFileError]:
    with pytest.raises(RuleFilesInvalid) as info:
        parse_ruleset(text.encode(), file)
    return info.value.problems


def _one_rule(when: str, rule_id: str = "r1", extra: str = "") -> str:
    """A file whose single rule (id at line 4, ``when`` at line 5) has the given condition."""
    return HEAD + f"  - id: {rule_id}\n    when: {when}\n    outcome: review\n" + extra


def _only(text: str) -> RuleFileError:
    problems = _problems(text)
    assert len(problems) == 1, [p.render() for p in problems]
    return problems[0]


def test_unknown_operator_message_has_the_documented_form() -> None:
    """An unknown operator is reported exactly as FILE:LINE: rule 'ID': unknown operator ... (expected ...)."""
    problem = _only(_one_rule("{amount: {gtt: 5}}", rule_id="large-inp"))
    assert problem.render() == (
        "rules/withdraw.yaml:5: rule 'large-inp': unknown operator 'gtt' "
        "(expected one of eq, ne, gt, gte, lt, lte, in, not_in, exists, in_list, not_in_list)"
    )


def test_unknown_top_level_key_is_refused_with_its_line() -> None:
    """An unknown key at the top of the file is refused at its own line."""
    problem = _only("ruleset: withdraw\nversion: 1\ncolour: red\nrules: []\n")
    assert (problem.file, problem.line, problem.rule_id) == (FILE, 3, None)
    assert "unknown key 'colour'" in problem.render()


def test_unknown_rule_key_is_refused_with_line_and_rule_id() -> None:
    """An unknown key inside a rule is refused with its line and the rule's id."""
    problem = _only(_one_rule("{amount: {gt: 5}}", extra="    priority: 3\n"))
    assert (problem.line, problem.rule_id) == (7, "r1")
    assert problem.render().startswith("rules/withdraw.yaml:7: rule 'r1': unknown key 'priority'")


def test_unknown_fact_path_on_the_left_is_refused() -> None:
    """A condition on a path the catalogue does not know is refused."""
    problem = _only(_one_rule("{account.colour: red}"))
    assert (problem.line, problem.rule_id) == (5, "r1")
    assert "unknown field 'account.colour'" in problem.problem


def test_unknown_fact_path_in_a_field_reference_is_refused() -> None:
    """A {field: ...} naming a path the catalogue does not know is refused."""
    problem = _only(_one_rule("{amount: {gt: {field: limits.max_everything}}}"))
    assert (problem.line, problem.rule_id) == (5, "r1")
    assert "unknown field 'limits.max_everything'" in problem.problem


def test_money_fact_compared_with_a_string_is_refused() -> None:
    """A money fact compared with a string literal is refused (number vs string)."""
    problem = _only(_one_rule("{amount: {gt: lots}}"))
    assert (problem.line, problem.rule_id) == (5, "r1")
    assert "'amount' is a number" in problem.problem and "string" in problem.problem


def test_string_fact_compared_with_a_number_is_refused() -> None:
    """A string fact compared with a number literal is refused (string vs number)."""
    problem = _only(_one_rule("{fund_transfer_type: 5}"))
    assert (problem.line, problem.rule_id) == (5, "r1")
    assert "'fund_transfer_type' is a string" in problem.problem and "number" in problem.problem


def test_money_field_compared_with_a_count_field_is_refused() -> None:
    """Comparing a money fact with a count fact through {field: ...} is refused."""
    problem = _only(_one_rule("{amount: {gt: {field: velocity.count_24h}}}"))
    assert (problem.line, problem.rule_id) == (5, "r1")
    assert "(money) cannot be compared with 'velocity.count_24h' (count)" in problem.problem


def test_duplicate_rule_ids_are_refused_at_the_second() -> None:
    """A second rule with the same id is refused at the second rule's id line."""
    text = HEAD + (
        "  - id: same\n    when: {amount: {gt: 5}}\n    outcome: review\n"
        "  - id: same\n    when: {amount: {gt: 6}}\n    outcome: reject\n"
    )
    problem = _only(text)
    assert (problem.line, problem.rule_id) == (7, "same")
    assert "duplicate rule id" in problem.problem


def test_empty_in_list_is_refused() -> None:
    """An `in` with no values is refused: it could never hold."""
    problem = _only(_one_rule("{fund_transfer_type: {in: []}}"))
    assert (problem.line, problem.rule_id) == (5, "r1")
    assert "in takes a non-empty list" in problem.problem


def test_unknown_transaction_type_is_refused() -> None:
    """A ruleset for a transaction type other than deposit or withdraw is refused."""
    problem = _only("ruleset: refund\nversion: 1\nrules: []\n")
    assert problem.line == 1
    assert problem.problem == "ruleset: 'refund' is not a transaction type; use one of deposit, withdraw"


@pytest.mark.parametrize(("text", "expected"), [
    (HEAD.replace("rules:", "default: approved\nrules:") + "  []\n",
     "default: 'approved' is not an outcome; use one of approve, review, reject"),
    (HEAD + "  - id: r1\n    when: {amount: 5}\n    outcome: [approve]\n",
     "rule 'r1': outcome: needs an outcome; use one of approve, review, reject"),
])
def test_an_unknown_outcome_names_the_value_given(text: str, expected: str) -> None:
    """The message names what the file says and the words it may use instead, never 'must be an outcome'."""
    assert expected in _only(text).render() and "must be an outcome" not in _only(text).render()


def test_a_literal_of_the_wrong_kind_is_quoted_as_yaml_writes_it() -> None:
    """A boolean compared with a money fact reads `true`, not Python's `True`."""
    problem = _only(_one_rule("{amount: true}"))
    assert "true is a bool" in problem.problem and "True" not in problem.problem


def test_a_file_that_is_not_yaml_is_refused_with_a_line() -> None:
    """Text that YAML cannot parse is refused with the line of the syntax error."""
    problem = _only("ruleset: withdraw\nrules: [unclosed\n  : : :\n")
    assert problem.file == FILE and problem.line is not None
    assert "not valid YAML" in problem.problem


def test_an_empty_file_is_refused() -> None:
    """An empty file is refused, not taken as an empty ruleset."""
    problem = _only("")
    assert problem.render() == "rules/withdraw.yaml: is empty"


def test_several_problems_are_reported_together() -> None:
    """Every problem in a file is reported at once, each with its own line and rule id."""
    text = HEAD + (
        "  - id: first\n    when: {amount: {gtt: 5}}\n    outcome: review\n"
        "  - id: second\n    when: {account.colour: red}\n    outcome: review\n"
        "  - id: third\n    when: {fund_transfer_type: {in: []}}\n    outcome: maybe\n"
    )
    where = {(p.line, p.rule_id) for p in _problems(text)}
    assert {(5, "first"), (8, "second"), (11, "third"), (12, "third")} <= where


def test_enum_literal_outside_the_value_list_is_refused() -> None:
    """A literal that is not one of a closed fact's values (product_type) is refused."""
    problem = _only(_one_rule("{product_type: {in: [preferred, platinum]}}"))
    assert (problem.line, problem.rule_id) == (5, "r1")
    assert "'product_type' is one of preferred, online; 'platinum' is not" in problem.problem


def test_money_literal_with_a_fraction_of_a_cent_is_refused() -> None:
    """A money literal such as 10.001 is refused, not rounded."""
    problem = _only(_one_rule("{amount: {lte: 10.001}}"))
    assert (problem.line, problem.rule_id) == (5, "r1")
    assert "fraction of a cent" in problem.problem


def test_money_literal_is_kept_as_an_exact_decimal() -> None:
    """A money literal becomes the Decimal written in the file, never a float."""
    rs = parse_ruleset(_one_rule("{amount: {lte: 999999.99}}").encode(), FILE)
    cond = rs.rules[0].when
    assert isinstance(cond, Compare) and cond.value == Decimal("999999.99")
    assert isinstance(cond.value, Decimal)


def test_field_reference_is_parsed_as_a_field_ref() -> None:
    """{field: other.path} becomes a FieldRef to that path."""
    rs = parse_ruleset(_one_rule("{amount: {gt: {field: limits.max_withdraw}}}").encode(), FILE)
    assert rs.rules[0].when == Compare("amount", "gt", FieldRef("limits.max_withdraw"), 5)


def test_content_hash_changes_with_the_content() -> None:
    """The content hash is the same for the same bytes and differs for different bytes."""
    a = parse_ruleset(_one_rule("{amount: {gt: 5}}").encode(), FILE)
    b = parse_ruleset(_one_rule("{amount: {gt: 5}}").encode(), "elsewhere.yaml")
    c = parse_ruleset(_one_rule("{amount: {gt: 6}}").encode(), FILE)
    assert a.content_hash == b.content_hash != c.content_hash


@pytest.mark.parametrize(
    "text",
    [
        # A python tag on a value that the loader constructs (version), on a scalar it
        # constructs (ruleset), inside a condition, and as the whole document.
        HEAD.replace("version: 1", 'version: !!python/object/apply:os.system ["touch {marker}"]') + "  []\n",
        'ruleset: !!python/object/apply:os.system ["touch {marker}"]\nversion: 1\nrules: []\n',
        "ruleset: !!python/name:os.system\nversion: 1\nrules: []\n",
        _one_rule('{amount: !!python/object/apply:os.system ["touch {marker}"]}'),
        _one_rule('{amount: {gt: !!python/object/apply:os.system ["touch {marker}"]}}'),
        _one_rule("{fund_transfer_type: !!python/name:os.system }"),
        '!!python/object/apply:os.system ["touch {marker}"]\n',
    ],
    ids=["version", "ruleset", "name-tag", "condition", "literal", "name-literal", "document"],
)
def test_python_tags_are_refused_and_never_executed(text: str, tmp_path: Path) -> None:
    """A rule file with !!python tags is refused as a RuleFilesInvalid and runs nothing."""
    marker = tmp_path / "pwned"
    path = tmp_path / "withdraw.yaml"
    path.write_text(text.replace("{marker}", str(marker)), encoding="utf-8")
    with pytest.raises(RuleFilesInvalid) as info:
        load_ruleset_file(path)
    assert info.value.problems and all(p.file == str(path) for p in info.value.problems)
    assert not marker.exists()
