"""``vipflow rules history|diff|rollback``: the ruleset versions that went live, compared, and restored.

Thin: parse, call ``worker.ledger.rule_history`` / ``worker.rule_versions`` / ``worker.rollback``, print.
Reading commands never create a ledger (exit 2 naming where they looked).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from producers.commands.numbers import whole


def add_parsers(sub: Any) -> None:
    """Register ``rules history``, ``rules diff`` and ``rules rollback`` on the ``rules`` subparsers."""
    history = sub.add_parser("history", help="the ruleset versions that went live: who, when, how")
    history.add_argument("ruleset", nargs="?", help="deposit or withdraw (default: every ruleset)")
    history.add_argument("--limit", type=whole(1), default=200, metavar="N", help="the last N (default 200)")
    history.add_argument("--json", action="store_true", help="one JSON object per version")
    history.set_defaults(func=history_cmd)

    diff = sub.add_parser("diff", help="compare two ruleset versions rule by rule")
    diff.add_argument("before", metavar="A", help="a rule file, NAME (rules.path), NAME@candidate, NAME@VERSION "
                                                  "or NAME@HASH (the ledger's history)")
    diff.add_argument("after", metavar="B", help="the same kinds as A")
    diff.add_argument("--json", action="store_true", help="print JSON")
    diff.set_defaults(func=diff_cmd)

    rollback = sub.add_parser("rollback", help="write an old version back as a new version (checked first)")
    rollback.add_argument("ruleset", help="deposit or withdraw")
    rollback.add_argument("version", help="the version number to restore, or at least 6 hex digits of its sha256")
    rollback.add_argument("--dry-run", action="store_true",
                          help="run the checks and show the changes; write and record nothing")
    rollback.set_defaults(func=rollback_cmd)


@contextmanager
def _history(args: argparse.Namespace) -> Iterator[tuple[Any, Callable[[], Any]]]:
    """(settings, a function opening the ledger's history once, on first use)."""
    from worker.config import load_settings
    from worker.ledger import Ledger
    from worker.ledger.rule_history import RuleHistory

    settings = load_settings(getattr(args, "config", None))
    opened: list[Ledger] = []

    def history() -> RuleHistory:
        if not opened:
            opened.append(Ledger.open(settings.database.url, create=False))
        return RuleHistory(opened[0].engine)

    try:
        yield settings, history
    finally:
        for ledger in opened:
            ledger.close()


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))


def history_cmd(args: argparse.Namespace) -> int:
    """Print the versions that went live, oldest first."""
    from rules.model import TRANSACTION_TYPES
    from worker.errors import InputError

    if args.ruleset is not None and args.ruleset not in TRANSACTION_TYPES:
        raise InputError(f"no ruleset {args.ruleset!r}; give one of {', '.join(TRANSACTION_TYPES)}")
    with _history(args) as (_, history):
        rows = history().rows(args.ruleset, limit=args.limit)
    if args.json:
        for row in rows:
            print(json.dumps(row.to_dict()))
        return 0
    if not rows:
        print("no ruleset version has gone live in this ledger yet (a worker records each version it loads)")
        return 0
    from rich.table import Table

    from producers.commands.output import print_table

    table = Table(title="ruleset versions that went live (oldest first)")
    for name in ("when (UTC)", "ruleset", "version", "sha256", "role", "how", "who", "note"):
        table.add_column(name, no_wrap=name != "note")
    for row in rows:
        role = row.role if row.share is None else f"{row.role} {row.share:.2f}%"
        table.add_row(_when(row.at), row.name, f"v{row.version}", row.content_hash[:12], role, row.how, row.actor,
                      row.note or "")
    print_table(table)
    return 0


def diff_cmd(args: argparse.Namespace) -> int:
    """Print what changed from A to B, rule by rule; exit 0 (the same or not: a diff is not a failure)."""
    from rules.diff import diff_rulesets
    from rules.errors import RuleFilesInvalid
    from worker.rule_versions import resolve

    with _history(args) as (settings, history):
        try:
            a = resolve(args.before, settings, history)
            b = resolve(args.after, settings, history)
        except RuleFilesInvalid as exc:
            for problem in exc.problems:
                print(problem.render())
            return 1
    result = diff_rulesets(a.ruleset, b.ruleset, a.label, b.label)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    for line in result.render():
        print(line)
    return 0


def rollback_cmd(args: argparse.Namespace) -> int:
    """Write the old version back as a new version after the same checks as any edit; exit 1 when refused."""
    from rules import RuleFilesInvalid, RuleTestsFailed
    from worker.errors import InputError
    from worker.ledger.actor import cli_actor
    from worker.rollback import rollback
    from worker.rule_versions import split_ref

    name, which = split_ref(f"{args.ruleset}@{args.version}")
    if which in ("current", "candidate"):
        raise InputError("give the version number to restore, or at least 6 hex digits of its sha256")
    with _history(args) as (settings, history):
        try:
            done = rollback(settings.rules.path, name, which, history(), cli_actor(settings),
                            dry_run=args.dry_run)
        except RuleFilesInvalid as exc:
            print(f"refused: {name} v{which} does not pass rules check as the folder would be; nothing was written")
            for problem in exc.problems:
                print(f"  {problem.render()}")
            return 1
        except RuleTestsFailed as exc:
            print(f"refused: with {name} v{which} in place the rule tests fail; nothing was written")
            for result in exc.report.results:
                if not result.passed:
                    print(f"  FAIL {result.name}: expected {result.expected_outcome}, got {result.actual_outcome}"
                          + (f" ({result.error})" if result.error else ""))
            return 1
        interval = settings.rules.reload_interval_s
    tests = "its tests restored beside it" if done.tests_restored else "the tests there kept (none were recorded)"
    if not done.written:
        print(f"dry run: {done.name} v{done.restored_version} (sha256 {done.restored_hash[:12]}) passes the checks "
              f"and would be written back as v{done.new_version} to {done.file}, {tests}; nothing was written")
    else:
        print(f"{done.name}: v{done.restored_version} (sha256 {done.restored_hash[:12]}) written back as "
              f"v{done.new_version} (sha256 {done.new_hash[:12]}) to {done.file}, {tests}; recorded in the "
              f"history. Workers load it within {interval:g} s (rules.reload_interval_s).")
    if done.replaced is not None and done.new is not None:
        from rules.diff import diff_rulesets
        from worker.rule_versions import label

        for line in diff_rulesets(done.replaced, done.new, label(done.replaced, "before"),
                                  label(done.new, "written" if done.written else "would be written")).render():
            print(line)
    return 0
