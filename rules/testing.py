"""The YAML rule tests: ``<rule file stem>_test.yaml`` beside each rule file.

A case gives (partial) facts and expects an outcome and, optionally, the exact
set of matched rules. Cases run through the production engine (durable_rules).
Rules that name lists are tested against the entries the test file gives
(``lists: {name: [entry, ...]}`` at the top for every case, or in a case for
that case alone); a list given nowhere is empty. The tests never read the
ledger's lists: a rule file's tests pass or fail the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from rules.book import TEST_SUFFIX, RuleBook, load_rulesets, rule_files
from rules.errors import FactError, RuleError, RuleFileError, RuleFilesInvalid
from rules.lists import KIND_OF_FACT, NamedList
from rules.model import OUTCOMES


@dataclass(frozen=True)
class CaseResult:
    """One case's result; ``error`` is set when the case itself is malformed."""

    file: str
    line: int
    name: str
    expected_outcome: str | None
    expected_matched: tuple[str, ...] | None
    actual_outcome: str | None = None
    actual_matched: tuple[str, ...] = ()
    error: str | None = None

    @property
    def passed(self) -> bool:
        """The case ran, and outcome and (when given) matched rules are as expected."""
        if self.error is not None:
            return False
        if self.expected_outcome is not None and self.expected_outcome != self.actual_outcome:
            return False
        return self.expected_matched is None or set(self.expected_matched) == set(self.actual_matched)


@dataclass
class TestReport:
    """All case results of a run, plus rule files that have no tests."""

    results: list[CaseResult] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        """How many cases passed."""
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        """How many cases failed."""
        return len(self.results) - self.passed


class RuleTestsFailed(RuleError):
    """A rule set's own tests did not all pass."""

    def __init__(self, report: TestReport):
        self.report = report
        first = next(r for r in report.results if not r.passed)
        super().__init__(
            f"{report.failed} rule test(s) failed; first: {first.file}:{first.line}: {first.name}"
        )


def test_file_for(rule_file: Path) -> Path:
    """Where the tests for a rule file live."""
    return rule_file.with_name(rule_file.stem + TEST_SUFFIX)


def run_tests(paths: list[str | Path]) -> TestReport:
    """Load the rule files under ``paths`` and run the test file beside each."""
    return _load_and_test(paths)[1]


def _load_and_test(paths: list[str | Path]) -> tuple[RuleBook, TestReport]:
    book = RuleBook(load_rulesets(paths))
    report = TestReport()
    for path in paths:
        for rule_file in rule_files(path):
            tests = test_file_for(rule_file)
            if not tests.exists():
                report.untested.append(str(rule_file))
                continue
            report.results.extend(_run_file(book, tests))
    return book, report


def _scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return loader.construct_object(node, deep=True)


def _run_file(book: RuleBook, file: Path) -> list[CaseResult]:
    loader = yaml.SafeLoader(file.read_text(encoding="utf-8"))
    try:
        root = loader.get_single_node()
        if not isinstance(root, yaml.MappingNode):
            raise RuleFilesInvalid([RuleFileError(str(file), 1, "a test file must be a mapping")])
        top = {_scalar(loader, k): v for k, v in root.value}
        ruleset = _scalar(loader, top["ruleset"]) if "ruleset" in top else None
        cases = top.get("cases")
        if not isinstance(cases, yaml.SequenceNode):
            raise RuleFilesInvalid([RuleFileError(str(file), 1, "'cases' must be a list")])
        shared = _scalar(loader, top["lists"]) if "lists" in top else {}
        return [_run_case(book, str(file), ruleset, loader, node, shared) for node in cases.value]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RuleFilesInvalid([RuleFileError(str(file), mark.line + 1 if mark else None,
                                              "not valid YAML")]) from None
    finally:
        loader.dispose()


def _case_lists(book: RuleBook, kind: str, shared: Any, given: Any) -> dict[str, NamedList]:
    """The lists a case decides against: every list the ruleset names, with the entries the test file's
    top-level ``lists:`` and then the case's own ``lists:`` give it (``{name: [entry, ...]}``), else empty.
    A list's kind is the one its fact takes. RuleError naming the list when an entry does not fit."""
    for where, value in (("lists", shared), ("case lists", given)):
        if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
            raise RuleError(f"{where} must map list names to lists of entries")
    ruleset = book.rulesets[kind]
    out: dict[str, NamedList] = {}
    for use in ruleset.list_refs:
        if use.name in out:
            continue
        entries = given.get(use.name, shared.get(use.name, []))
        out[use.name] = NamedList.of(use.name, KIND_OF_FACT[use.path], entries, version=0)
    stray = sorted(set(given) - set(out))
    if stray:
        raise RuleError(f"case lists names list(s) the ruleset does not use: {', '.join(map(str, stray))}")
    return out


def _run_case(book: RuleBook, file: str, ruleset: Any, loader: yaml.SafeLoader,
              node: yaml.Node, shared: Any = None) -> CaseResult:
    line = node.start_mark.line + 1
    case = _scalar(loader, node)
    if not isinstance(case, dict):
        return CaseResult(file, line, "?", None, None, error="a case must be a mapping")
    name = str(case.get("name", f"case at line {line}"))
    expect = case.get("expect") or {}
    outcome = expect.get("outcome") if isinstance(expect, dict) else None
    matched = expect.get("matched") if isinstance(expect, dict) else None
    expected_matched = tuple(matched) if isinstance(matched, list) else None
    base = CaseResult(file, line, name, outcome, expected_matched)
    unknown = set(case) - {"name", "facts", "expect", "ruleset", "lists"}
    if unknown:
        return _with(base, error=f"unknown key(s) in case: {', '.join(sorted(map(str, unknown)))}")
    if outcome not in OUTCOMES:
        return _with(base, error=f"expect.outcome must be one of {', '.join(OUTCOMES)}")
    kind = case.get("ruleset", ruleset)
    if kind not in book.rulesets:
        return _with(base, error=f"no ruleset '{kind}' loaded for this test file")
    facts = case.get("facts") or {}
    if not isinstance(facts, dict):
        return _with(base, error="facts must be a mapping")
    if expected_matched is not None:
        stray = [m for m in expected_matched if m not in {r.id for r in book.rulesets[kind].rules}]
        if stray:
            return _with(base, error=f"expect.matched names unknown rule(s): {', '.join(stray)}")
    try:
        lists = _case_lists(book, kind, shared if shared is not None else {}, case.get("lists") or {})
        decision = book.decide(kind, facts, lists)
    except (FactError, RuleError) as exc:
        return _with(base, error=str(exc))
    return _with(base, actual_outcome=decision.outcome, actual_matched=decision.matched_ids)


def _with(base: CaseResult, **changes: Any) -> CaseResult:
    return replace(base, **changes)


def verify_rulebook(path: str | Path) -> RuleBook:
    """Load the rule files at ``path`` and require their own tests to pass (hot-reload gate).

    The book returned is the one the tests ran against: the files are read once, so an
    edit landing mid-check can never be accepted untested.
    """
    book, report = _load_and_test([path])
    if report.failed:
        raise RuleTestsFailed(report)
    return book


def verify_tested_rulebook(path: str | Path) -> RuleBook:
    """``verify_rulebook``, and every rule file at ``path`` has a test file beside it with at least one
    case: the gate of a rollout's candidate, whose own tests must pass before any traffic reaches it.

    Raises RuleFilesInvalid (``rules check`` fails), RuleTestsFailed, or RuleError naming the rule file
    without tests.
    """
    book, report = _load_and_test([path])
    if report.untested:
        file = Path(report.untested[0])
        raise RuleError(f"{file} has no tests beside it ({test_file_for(file).name}); a candidate must pass "
                        "its own tests before any traffic reaches it")
    ran = {r.file for r in report.results}
    for rule_file in rule_files(path):
        if str(test_file_for(rule_file)) not in ran:
            raise RuleError(f"{test_file_for(rule_file)} holds no cases; a candidate must pass its own tests "
                            "before any traffic reaches it")
    if report.failed:
        raise RuleTestsFailed(report)
    return book
