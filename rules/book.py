"""A RuleBook: the rulesets of one directory (one per transaction type), ready to decide."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from rules.decision import Decision, decide
from rules.durable import DurableEngine, OracleEngine
from rules.errors import RuleError, RuleFileError, RuleFilesInvalid
from rules.facts import prepare
from rules.lists import EMPTY, ListLookup, membership, membership_checks
from rules.loader import load_ruleset_file
from rules.model import RuleSet

TEST_SUFFIX = "_test.yaml"


class Engine(Protocol):
    """What an evaluator does: the ids of the rules that hold for prepared facts."""

    name: str
    ruleset: RuleSet

    def __init__(self, ruleset: RuleSet) -> None: ...

    def matched(self, facts: dict[str, Any]) -> set[str]: ...


def rule_files(path: str | Path) -> list[Path]:
    """The rule files at ``path``: the file itself, or a directory's ``*.yaml`` except tests."""
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.glob("*.yaml") if not f.name.endswith(TEST_SUFFIX))
    return [p]


class RuleBook:
    """Rulesets keyed by transaction type, each with its compiled engine."""

    def __init__(self, rulesets: list[RuleSet], engine: type[Engine] = DurableEngine):
        self.rulesets = {rs.name: rs for rs in rulesets}
        self._engines: dict[str, Engine] = {rs.name: engine(rs) for rs in rulesets}
        self._lists = {rs.name: membership_checks(rs.list_pairs) for rs in rulesets}
        joined = "".join(f"{n}:{rs.content_hash};" for n, rs in sorted(self.rulesets.items()))
        self.content_hash = hashlib.sha256(joined.encode()).hexdigest()

    def get(self, transaction_type: str) -> RuleSet:
        """The ruleset for a transaction type; RuleError when the book has none."""
        try:
            return self.rulesets[transaction_type]
        except KeyError:
            raise RuleError(f"no ruleset for transaction type '{transaction_type}'") from None

    def reads(self, transaction_type: str, namespace: str) -> bool:
        """Whether the ruleset for the type reads facts under ``namespace`` (True without a ruleset:
        the decision will fail anyway, and asking too much is the safe side)."""
        ruleset = self.rulesets.get(transaction_type)
        return ruleset is None or ruleset.reads(namespace)

    def decide(self, transaction_type: str, facts: Mapping[str, Any], lists: ListLookup = EMPTY) -> Decision:
        """Decide nested facts with the ruleset for the transaction type, against ``lists`` (name ->
        ``rules.lists.NamedList``) for the rules that name lists; the Decision records each list's version.
        RuleError when the ruleset names a list that ``lists`` lacks; FactError on facts that do not fit."""
        ruleset = self.get(transaction_type)
        flat = prepare(facts)
        checks = self._lists[transaction_type]
        versions = membership(checks, flat, lists) if checks else None
        return decide(ruleset, self._engines[transaction_type].matched(flat), versions)

    @property
    def list_names(self) -> tuple[str, ...]:
        """Every list any ruleset of the book names, sorted."""
        return tuple(sorted({n for rs in self.rulesets.values() for n in rs.list_names}))

    def matched(self, transaction_type: str, flat_facts: dict[str, Any]) -> set[str]:
        """The raw matched ids for already prepared facts (benchmarks and the oracle test)."""
        return self._engines[transaction_type].matched(flat_facts)


def load_rulesets(paths: list[str | Path]) -> list[RuleSet]:
    """Load every rule file under ``paths``; RuleFilesInvalid lists all problems in all files, its ``partial``
    the rulesets as far as they loaded (the good files, and the rules that parsed of the others)."""
    problems: list[RuleFileError] = []
    rulesets: list[RuleSet] = []
    partial: list[RuleSet] = []  # what loaded of the files with problems (RuleFilesInvalid.partial)
    seen: dict[str, str] = {}
    for path in paths:
        files = rule_files(path)
        if not files and Path(path).is_dir():
            problems.append(RuleFileError(str(path), None, "holds no rule files (*.yaml)"))
        elif not Path(path).exists():
            problems.append(RuleFileError(str(path), None, "does not exist"))
            continue
        for file in files:
            try:
                rs = load_ruleset_file(file)
            except RuleFilesInvalid as exc:
                problems.extend(exc.problems)
                partial.extend(exc.partial)
                continue
            if rs.name in seen:
                problems.append(RuleFileError(str(file), None,
                                              f"a second '{rs.name}' ruleset (the first is {seen[rs.name]})"))
                continue
            seen[rs.name] = str(file)
            rulesets.append(rs)
    if problems:
        raise RuleFilesInvalid(problems, partial=[*rulesets, *partial])
    return rulesets


def load_rulebook(path: str | Path, engine: type[Engine] = DurableEngine) -> RuleBook:
    """Load and compile the rulesets at ``path``; RuleFilesInvalid on any problem."""
    return RuleBook(load_rulesets([path]), engine)


def oracle_book(path: str | Path) -> RuleBook:
    """The same rulesets evaluated by the plain-Python oracle."""
    return load_rulebook(path, OracleEngine)
