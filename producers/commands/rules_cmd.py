"""``vipflow rules check|test|explain|report``: thin wrappers over the rules package (``report``: its own module)."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``rules`` and its subcommands."""
    from producers.commands import rules_history_cmd

    rules = subparsers.add_parser("rules", help="check, test, explain rule files; their history, diff, rollback; "
                                                 "report rules against labels")
    sub = rules.add_subparsers(dest="rules_command", required=True)

    check = sub.add_parser("check", help="validate rule files; every problem as file:line")
    check.add_argument("paths", nargs="*", help="rule files or directories (default: rules.path)")
    check.add_argument("--no-ledger", action="store_true",
                       help="do not read the ledger's lists: list names are checked for their form only")
    check.set_defaults(func=check_cmd)

    test = sub.add_parser("test", help="run the *_test.yaml cases beside the rule files")
    test.add_argument("paths", nargs="*", help="rule files or directories (default: rules.path)")
    test.set_defaults(func=test_cmd)

    explain = sub.add_parser("explain", help="show every rule's verdict on a set of facts")
    explain.add_argument("ruleset", help="a transaction type (deposit, withdraw) or a rule file")
    explain.add_argument("facts", help="a JSON file of facts (nested, as in the catalogue)")
    explain.add_argument("--rules", dest="rules_path", help="rules directory (default: rules.path)")
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.add_argument("--side", choices=("current", "candidate"),
                         help="explain with the rollout's current rules (rules.path) or its candidate "
                              "(rules.candidate); default: the side the facts' transaction_id lands on")
    explain.set_defaults(func=explain_cmd)
    rules_history_cmd.add_parsers(sub)

    from producers.commands.rules_report_cmd import add_report

    add_report(sub)


def _paths(args: argparse.Namespace) -> list[str | Path]:
    if args.paths:
        _exist(args.paths)
        return list(args.paths)
    from worker.config import load_settings
    from worker.rule_paths import rules_origin

    path = load_settings(args.config).rules.path
    print(f"rules: {rules_origin(path)}")  # rules.path, resolved: say which directory this is
    return [path]


def _exist(paths: list[str]) -> None:
    """InputError (exit 2) naming the first path given that does not exist (not "holds no rule files")."""
    from worker.errors import InputError

    for path in paths:
        if not Path(path).exists():
            raise InputError(f"{path} does not exist; give rule files or a directory of them "
                             "(vipflow rules check with no path checks rules.path)")


def check_cmd(args: argparse.Namespace) -> int:
    """Exit 0 when every rule file is valid; else print each problem and exit 1."""
    from producers.commands.output import plural
    from producers.commands.rules_lists import check_rule_lists
    from rules.book import RuleBook, load_rulesets
    from rules.errors import RuleFileError, RuleFilesInvalid

    problems: list[RuleFileError] = []
    try:
        rulesets = load_rulesets(_paths(args))
    except RuleFilesInvalid as exc:  # the lists of the rules that did load are checked all the same
        rulesets, problems = list(exc.partial), list(exc.problems)
    if not problems:
        try:
            RuleBook(rulesets)  # compiling also catches rules too complex for durable_rules
        except RuleFilesInvalid as exc:
            problems = list(exc.problems)
    problems += check_rule_lists(args, rulesets)  # the lists they name, against the ledger's
    if problems:
        files = {p.file: n for n, p in reversed(list(enumerate(problems)))}  # each file where it came first
        for problem in sorted(problems, key=lambda p: (files[p.file], p.line or 0)):
            print(problem.render())
        return 1
    for rs in rulesets:
        print(f"ok: {rs.file}: ruleset {rs.name} v{rs.version}, {plural(len(rs.rules), 'rule')}, "
              f"sha256 {rs.content_hash[:12]}")
    return 0


def test_cmd(args: argparse.Namespace) -> int:
    """Run the rule tests; print failures and close with 'N passed, N failed'."""
    from rules.errors import RuleFilesInvalid
    from rules.testing import run_tests

    try:
        report = run_tests(_paths(args))
    except RuleFilesInvalid as exc:
        for problem in exc.problems:
            print(problem.render())
        print("0 passed, 1 failed")
        return 1
    for result in report.results:
        if result.passed:
            continue
        print(f"FAIL {result.file}:{result.line}: {result.name}")
        if result.error:
            print(f"  error:    {result.error}")
            continue
        print(f"  expected: {result.expected_outcome}  matched {_ids(result.expected_matched)}")
        print(f"  actual:   {result.actual_outcome}  matched {_ids(result.actual_matched)}")
    for file in report.untested:
        print(f"note: {file} has no tests beside it")
    print(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


def _ids(ids: tuple[str, ...] | None) -> str:
    if ids is None:
        return "(not checked)"
    return "[" + ", ".join(sorted(ids)) + "]"


def explain_cmd(args: argparse.Namespace) -> int:
    """Print every rule's verdict for the facts, then the outcome."""
    from rules.book import load_rulesets
    from rules.errors import RuleError, RuleFilesInvalid
    from rules.explain import explain

    try:
        facts = json.loads(Path(args.facts).read_text(encoding="utf-8"), parse_float=Decimal)
    except OSError as exc:
        print(f"vipflow: cannot read {args.facts}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"vipflow: {args.facts} is not valid JSON", file=sys.stderr)
        return 2
    if not isinstance(facts, dict):
        print(f"vipflow: {args.facts} must hold a JSON object of facts", file=sys.stderr)
        return 2
    source: str | Path
    side_note = None
    if Path(args.ruleset).is_file():
        source = args.ruleset
    elif args.rules_path:
        source = args.rules_path
    else:
        source, side_note = _side_rules(args, facts)
    try:
        rulesets = {rs.name: rs for rs in load_rulesets([source])}
        ruleset = rulesets[args.ruleset] if args.ruleset in rulesets else next(iter(rulesets.values()))
        if not Path(args.ruleset).is_file() and args.ruleset not in rulesets:
            print(f"vipflow: no ruleset '{args.ruleset}' in {source}", file=sys.stderr)
            return 2
        from producers.commands.rules_lists import ledger_lists

        result = explain(ruleset, facts, ledger_lists(args, ruleset))  # the ledger's lists, as they are now
    except RuleFilesInvalid as exc:
        for problem in exc.problems:
            print(problem.render())
        return 1
    except RuleError as exc:
        print(f"vipflow: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**result.to_dict(), **({"side": side_note} if side_note else {})}, indent=2))
        return 0
    if side_note:
        print(f"side: {side_note}")
    print(f"ruleset {ruleset.name} v{ruleset.version} ({ruleset.file})")
    for row in result.rules:
        mark = "MATCH" if row.matched else "no   "
        print(f"  {mark} {row.rule.id} -> {row.rule.outcome}")
        if row.failure is not None:
            print(f"        line {row.failure.line}: {row.failure.condition}; {row.failure.actual}")
    d = result.decision
    how = "default" if d.used_default else "most severe of " + ", ".join(d.matched_ids)
    print(f"outcome: {d.outcome} ({how})")
    if d.lists:
        print("lists: " + ", ".join(f"{name} v{version}" for name, version in sorted(d.lists.items())))
    return 0


def _side_rules(args: argparse.Namespace, facts: dict[str, Any]) -> tuple[Path, str | None]:
    """The rules folder to explain with, and which rollout side it is, said for a person (None: no rollout).
    ``--side`` chooses; else the side the facts' ``transaction_id`` lands on (``worker.rollout``)."""
    from worker.config import load_settings
    from worker.errors import InputError
    from worker.rollout import BUCKETS, bucket, side_for

    rules = load_settings(args.config).rules
    if args.side == "candidate" and rules.candidate is None:
        raise InputError("--side candidate: rules.candidate is not set")
    if rules.candidate is None:
        return rules.path, None
    if args.side is not None:
        return (rules.candidate if args.side == "candidate" else rules.path), f"{args.side} (--side)"
    txid = facts.get("transaction_id")
    if not isinstance(txid, str) or not txid:
        return rules.path, "current (no transaction_id in the facts to place it; --side chooses)"
    side = side_for(txid, rules.candidate_share)
    how = (f"transaction {txid} is in bucket {bucket(txid)} of {BUCKETS}, rules.candidate_share "
           f"{rules.candidate_share:.2f} % takes buckets below {int(rules.candidate_share * 100)}")
    if side == "candidate":
        from worker.rule_versions import file_for

        if file_for(rules.candidate, args.ruleset) is None:  # as in the worker: that type stays current
            return rules.path, f"current ({how}, but the candidate has no {args.ruleset} ruleset)"
        return rules.candidate, f"candidate ({how})"
    return rules.path, f"current ({how})"
