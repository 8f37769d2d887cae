"""``vipflow replay``: re-queue notifications from the ledger, or backtest rules on them (``--dry-run``).

Thin: parse, call ``worker.replay`` / ``worker.backtest``, print. Exit 2 for a
bad selection or bad rule files, 1 when the work failed (both through
``producers.exits``), 130 when Ctrl-C stopped it (after saying how far it got).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from producers.commands.numbers import whole


def add_parser(subparsers: Any) -> None:
    """Register ``replay``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "replay", help="re-queue notifications from the ledger, or backtest rules on them with --dry-run")
    p.add_argument("--since", metavar="TIME", help="received at or after this ISO time (no offset: UTC)")
    p.add_argument("--until", metavar="TIME", help="received at or before this ISO time")
    p.add_argument("--id", dest="ids", action="append", default=[], metavar="TRANSACTION_ID",
                   help="a transaction's notifications (repeatable)")
    p.add_argument("--dlq", action="store_true",
                   help="the open dead letters (their transaction not final): says per letter what was done; a "
                        "letter stays until its transaction is final")
    p.add_argument("--unprocessed", action="store_true", help="received but never finished")
    p.add_argument("--force", action="store_true",
                   help="re-decide the undecided or failed ones (never re-approves a completed approval; the "
                        "earlier decision stays in the ledger)")
    p.add_argument("--dry-run", action="store_true",
                   help="backtest: decide in process, change nothing (no selection: the whole ledger)")
    p.add_argument("--rules", metavar="PATH", help="with --dry-run: these rules (default: rules.path)")
    p.add_argument("--candidate", action="store_true",
                   help="with --dry-run: decide every transaction with the rollout's candidate (rules.candidate)")
    p.add_argument("--rollout", action="store_true",
                   help="with --dry-run: decide each transaction with the side it lands on under "
                        "rules.candidate_share, as the workers do; counts per side")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="with --dry-run: compare two versions of one ruleset (NAME@VERSION, NAME@HASH from the "
                        "ledger's history, NAME, NAME@candidate or a rule file): A's decisions stand for the "
                        "recorded ones, B decides; that ruleset's transactions only")
    p.add_argument("--lists-as-decided", action="store_true",
                   help="with --dry-run: each transaction against the list versions its decision used, not the "
                        "lists as they are now (what a rule change alone does)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.add_argument("--max-rows", type=whole(0), default=200, metavar="N",
                   help="table rows to print (default 200; --json prints every difference)")
    p.set_defaults(func=run)


@contextmanager
def _stop_on_ctrl_c() -> Iterator[Callable[[], bool]]:
    # The first Ctrl-C asks the loop to stop between items (no half-done reset); a second one kills.
    asked = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield asked.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    rate = TextColumn("{task.fields[rate]}")
    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(), rate,
                   TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    task = bar.add_task(label, total=None, rate="")
    with bar:
        def update(done: int, total: int) -> None:
            speed = bar.tasks[0].speed
            bar.update(task, completed=done, total=total, rate=f"{speed:,.0f}/s" if speed else "")

        yield update


def run(args: argparse.Namespace) -> int:
    """Select, then re-queue or backtest; print what happened."""
    from worker.config import load_settings
    from worker.errors import InputError
    from worker.ledger import Ledger
    from worker.replay import make_selection, stores
    from worker.store.connection import connect

    for flag, given in (("--rules", args.rules), ("--candidate", args.candidate), ("--rollout", args.rollout),
                        ("--compare", args.compare)):
        if given and not args.dry_run:
            raise InputError(f"{flag} only goes with --dry-run")
    if sum(map(bool, (args.rules, args.candidate, args.rollout, args.compare))) > 1:
        raise InputError("choose one of --rules, --candidate, --rollout and --compare")
    if args.lists_as_decided and not args.dry_run:
        raise InputError("--lists-as-decided only goes with --dry-run")
    if args.force and args.dry_run:
        raise InputError("--force changes records; a --dry-run changes nothing: choose one")
    selection = make_selection(since=args.since, until=args.until, ids=args.ids, dlq=args.dlq,
                               unprocessed=args.unprocessed, everything=args.dry_run)
    settings = load_settings(getattr(args, "config", None))
    book = None
    ledger = Ledger.open(settings.database.url, create=False) if args.dry_run else None
    against = label = None
    if args.dry_run:
        assert ledger is not None
        try:
            book, against, label = _backtest_books(args, settings, ledger)
        except BaseException:
            ledger.close()
            raise
        if book is None:
            ledger.close()
            return 2
    st = stores(connect(settings.redis), settings.redis.key_prefix,
                ledger or Ledger.open(settings.database.url, create=False), settings.worker.lock_ttl_s)
    try:
        if args.dry_run:
            return _backtest(args, settings, st, selection, book, against, label)
        if args.dlq:
            return _dead_letters(args, settings, st, selection)
        return _requeue(args, settings, st, selection)
    finally:
        st.ledger.close()


def _missing(entry_ids: list[str]) -> None:
    for entry_id in entry_ids:
        print(f"vipflow replay: dead letter {entry_id}: its notification is in neither the ledger nor the "
              "intake buffer; skipped", file=sys.stderr)


def _backtest_books(args: argparse.Namespace, settings: Any, ledger: Any) -> tuple[Any, Any, str | None]:
    """(the book that decides, how: ``worker.backtest.Against``, what stands for "recorded") for the flags;
    the book None when rule files do not load (their problems printed)."""
    from worker.backtest import Against

    if args.compare:
        return _compare_books(args, settings, ledger)
    if args.candidate or args.rollout:
        from worker.errors import InputError

        if settings.rules.candidate is None:
            raise InputError("--candidate and --rollout need rules.candidate (the rollout's candidate rules)")
        candidate = _rulebook(settings.rules.candidate)
        current = _rulebook(settings.rules.path) if candidate is not None else None
        if candidate is None or current is None:
            return None, None, None
        if args.candidate:  # a type the candidate has no ruleset for stays with the current rules, as in the worker
            from rules import RuleBook

            kept = [rs for name, rs in current.rulesets.items() if name not in candidate.rulesets]
            return RuleBook([*candidate.rulesets.values(), *kept]), Against(), None
        return current, Against(pick=_rollout_pick(current, candidate, settings.rules.candidate_share),
                               others=(candidate,)), None
    return _rulebook(args.rules or settings.rules.path), Against(), None


def _rollout_pick(current: Any, candidate: Any, share: Any) -> Any:
    from worker.rollout import choose

    class Fixed:  # a book source that always gives the same book
        def __init__(self, book: Any):
            self.book = book

        def current(self) -> Any:
            return self.book

    cur, cand = Fixed(current), Fixed(candidate)
    return lambda txid, ttype: choose(txid, ttype, cur, cand, share)


def _compare_books(args: argparse.Namespace, settings: Any, ledger: Any) -> tuple[Any, Any, str | None]:
    from rules import RuleBook, RuleFilesInvalid
    from worker.backtest import Against
    from worker.errors import InputError
    from worker.ledger.rule_history import RuleHistory
    from worker.rule_versions import resolve

    try:
        a, b = (resolve(ref, settings, lambda: RuleHistory(ledger.engine)) for ref in args.compare)
    except RuleFilesInvalid as exc:
        for problem in exc.problems:
            print(problem.render(), file=sys.stderr)
        return None, None, None
    if a.ruleset.name != b.ruleset.name:
        raise InputError(f"--compare: {a.label} and {b.label} are not versions of the same ruleset")
    print(f"comparing {a.label} (as recorded) with {b.label}", file=sys.stderr)
    return (RuleBook([b.ruleset]), Against(baseline=RuleBook([a.ruleset]), only_type=a.ruleset.name), a.label)


def _backtest(args: argparse.Namespace, settings: Any, st: Any, selection: Any, book: Any, against: Any = None,
              baseline: str | None = None) -> int:
    from producers.commands.output import plural
    from worker.backtest import backtest

    def emit(diff: Any) -> None:
        print(json.dumps(diff.to_dict()))

    from worker.lists.store import ListStore
    from worker.lists.versions import ListsAsDecided

    named = set(book.list_names)  # and those of the other books deciding: a rollout's candidate, a baseline
    for other in (*getattr(against, "others", ()), getattr(against, "baseline", None)):
        if other is not None:
            named |= set(other.list_names)
    store = ListStore(st.ledger.engine)
    lists = store.load_named(tuple(sorted(named)))  # as they are now; ListRefused: exit 2
    as_decided = ListsAsDecided(store, lists).at if args.lists_as_decided else None
    with _stop_on_ctrl_c() as stop, _progress("backtest") as progress:
        report = backtest(selection, st, book, settings.limits, keep=0 if args.json else max(0, args.max_rows),
                          on_difference=emit if args.json else None, on_progress=progress, should_stop=stop,
                          lists=lists, as_decided=as_decided, **({"against": against} if against is not None else {}),
                          baseline_label=baseline)
    _missing(report.missing)
    _print_backtest(report, as_json=args.json, max_rows=args.max_rows, as_decided=args.lists_as_decided)
    if report.interrupted:
        print(f"vipflow replay: interrupted after {plural(report.transactions, 'transaction')}; "
              "the totals cover those only", file=sys.stderr)
        return 130
    return 0


def _rulebook(path: Any) -> Any:
    from rules import RuleFilesInvalid, load_rulebook

    try:
        return load_rulebook(path)
    except RuleFilesInvalid as exc:
        for problem in exc.problems:
            print(problem.render(), file=sys.stderr)
        return None


def _requeue(args: argparse.Namespace, settings: Any, st: Any, selection: Any) -> int:
    from producers.commands.output import plural
    from worker.ledger.actor import cli_actor
    from worker.replay import requeue, select
    from worker.store.publisher import CeleryPublisher

    selected = select(selection, st)
    _missing(selected.missing)
    publisher = CeleryPublisher.from_settings(settings)
    with _stop_on_ctrl_c() as stop, _progress("replay") as progress:
        report = requeue(selected, st, publisher, force=args.force,
                         actor=cli_actor(settings) if args.force else None, on_progress=progress, should_stop=stop)
    summary = {"selected": report.selected, "queued": report.queued,
               "already_final": report.already_final, "skipped_invalid": report.skipped_invalid,
               "redecided": len(report.redecided), "missing": len(report.missing),
               "interrupted": report.interrupted}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"selected {plural(report.selected, 'notification')}; queued {report.queued} "
              f"({report.already_final} of them already settled: the worker leaves those as they are)")
        if report.skipped_invalid:
            print(f"skipped {report.skipped_invalid} archived as invalid (nothing to decide)")
        if args.force:
            print(f"--force: {plural(len(report.redecided), 'transaction')} will be decided again")
    if report.interrupted:
        print(f"vipflow replay: interrupted after queueing {report.queued} of {report.selected}; "
              "run the same replay again to finish (already queued ones are not acted on twice)",
              file=sys.stderr)
        return 130
    return 0


def _dead_letters(args: argparse.Namespace, settings: Any, st: Any, selection: Any) -> int:
    """Each open dead letter and what was done with it (JSON: one line per letter, the totals last)."""
    from producers.commands.output import plural
    from worker.ledger.actor import cli_actor
    from worker.replay_dlq import LetterOutcome, replay_dead_letters
    from worker.store.publisher import CeleryPublisher

    def say(outcome: LetterOutcome) -> None:
        if args.json:
            print(json.dumps(outcome.to_dict()))
        else:
            print(f"letter {outcome.letter_id}  transaction {outcome.transaction_id or '?'}  entry "
                  f"{outcome.entry_id}: {outcome.message}")

    with _stop_on_ctrl_c() as stop:
        report = replay_dead_letters(selection, st, CeleryPublisher.from_settings(settings), force=args.force,
                                     actor=cli_actor(settings) if args.force else None, should_stop=stop,
                                     on_outcome=say)
    counts = report.counts
    if args.json:
        print(json.dumps({"totals": {"letters": len(report.outcomes), **dict(sorted(counts.items())),
                                     "closed_before": report.closed_before, "interrupted": report.interrupted}}))
    else:
        parts = [f"{n} {what.replace('_', ' ')}" for what, n in sorted(counts.items())]
        print(f"{plural(len(report.outcomes), 'open dead letter')}{': ' + ', '.join(parts) if parts else ''}; "
              f"{plural(report.closed_before, 'letter')} closed before (their transactions are final)")
    if report.interrupted:
        print(f"vipflow replay: interrupted after {plural(len(report.outcomes), 'letter')}; run it again to go on",
              file=sys.stderr)
        return 130
    return 0


def _print_backtest(report: Any, *, as_json: bool, max_rows: int, as_decided: bool = False) -> None:
    """The totals (JSON: the differences went out as they were found), or the headline (outcome changes of
    transactions decided before), a table of the first ``max_rows`` differences with the kind of each,
    the other kinds counted apart, and the totals per outcome before and after."""
    if as_json:
        print(json.dumps({"totals": report.totals()}))
        return
    from rich.table import Table

    from producers.commands.output import console as make_console
    from producers.commands.output import plural, print_table

    console = make_console()
    before = f"decided by {report.baseline}" if report.baseline else "decided before"
    table = Table(title=f"{report.outcome_changes} of {plural(report.decided, 'transaction')} {before} "
                        "would get another outcome")
    shown = report.differences[:max_rows]
    table.add_column("transaction", no_wrap=True,
                     min_width=max((len(d.transaction_id) for d in shown), default=len("transaction")))
    for name in ("type", "change", "recorded", "new"):
        table.add_column(name, no_wrap=True)
    longest_rule = max((len(i) + 1 for d in shown for i in (*d.added, *d.removed)), default=1)
    table.add_column("rules that changed", min_width=longest_rule, overflow="fold")  # wraps between rule ids
    for diff in shown:
        changed = [f"+{i}" for i in diff.added] + [f"-{i}" for i in diff.removed]
        table.add_row(diff.transaction_id, diff.transaction_type or "?", diff.change, diff.recorded, diff.new,
                      diff.error or " ".join(changed))
    if shown:
        print_table(table)
    else:
        console.print(table.title)
    if report.different > max_rows:
        console.print(f"... and {report.different - max_rows} more rows (--max-rows N, or --json for all)")
    notes = [(report.rule_changes, "keep their outcome with other matched rules"),
             (report.never_decided, "were never decided before: shown with (none) recorded"),
             (report.errors, "cannot be decided by these rules: shown with (error)")]
    for n, what in notes:
        if n:
            console.print(f"{plural(n, 'more transaction')} {what}")
    totals = Table(title="outcomes before and after")
    for name in ("outcome", "recorded", "new"):
        totals.add_column(name, justify="right" if name != "outcome" else "left")
    for outcome in sorted(set(report.before) | set(report.after)):
        totals.add_row(outcome, str(report.before.get(outcome, 0)), str(report.after.get(outcome, 0)))
    print_table(totals)
    if report.lists and not as_decided:
        used = ", ".join(f"{name} v{version}" for name, version in sorted(report.lists.items()))
        console.print(f"lists as they are now: {used}")
    elif report.lists:
        console.print("lists at the versions each decision used (--lists-as-decided); the newest: "
                      + ", ".join(f"{name} v{version}" for name, version in sorted(report.lists.items())))
    n = report.other_list_versions
    if n and not as_decided:
        console.print(f"note: {plural(n, 'transaction')} decided before {'was' if n == 1 else 'were'} decided with "
                      "other versions of these lists: their differences may come from the lists' changes, not the "
                      "rules' (--lists-as-decided holds the lists as they were)")
    elif n:
        console.print(f"note: {plural(n, 'transaction')} {'was' if n == 1 else 'were'} decided before the rules "
                      "named these lists: decided here with the lists as they are now")
    if report.sides:
        console.print("rollout sides: " + ", ".join(f"{side} {n}" for side, n in sorted(report.sides.items())))
    for source, n in sorted(report.unasked.items()):
        console.print(f"note: {plural(n, 'transaction')} {'was' if n == 1 else 'were'} decided here on {source}.* "
                      f"facts the live rules never read, so the worker never asked for them: they are unknown in "
                      f"these records, and differences in rules that read them say what an unknown {source} does, "
                      "not the real one")
