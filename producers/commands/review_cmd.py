"""``vipflow review list|show|approve|reject``: thin wrappers over ``worker.review_service``.

Reads and writes the ledger (``database.url``). Approvals and rejections are
recorded as the authenticated actor (``ledger.actor``, else the operating-system
user); ``--reviewer NAME`` is kept beside it as a stated name. The same gate as the
review workspace applies (``worker.review_workspace.command_line_gate``): four eyes
above ``review.four_eyes_amount``, and no decision while a workspace reviewer's claim is live.
Errors go to ``producers.exits``: exit 2 when the transaction is not in the queue or the
input is incomplete, 1 when VIP Connect, the wallet, Redis or the ledger failed (the
transaction stays in review).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from producers.commands.numbers import transaction_id, whole


def add_parser(subparsers: Any) -> None:
    """Register ``review`` and its four subcommands."""
    review = subparsers.add_parser("review", help="the transactions waiting for a person")
    sub = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")

    ls = sub.add_parser("list", help="queued transactions, oldest first; overdue ones flagged")
    ls.add_argument("--json", action="store_true", help="JSON lines, one per transaction")
    ls.add_argument("--limit", type=whole(1), default=1000, metavar="N", help="at most N (default 1000)")
    ls.set_defaults(func=list_cmd)

    show = sub.add_parser("show", help="one queued transaction: why it waits, its decision and its events")
    show.add_argument("transaction_id", metavar="ID", type=transaction_id)
    show.add_argument("--json", action="store_true",
                      help="{record, events, notifications, review} as JSON (masked)")
    show.set_defaults(func=show_cmd)

    approve = sub.add_parser("approve", help="approve through VIP Connect (at most once)")
    approve.add_argument("transaction_id", metavar="ID", type=transaction_id)
    approve.add_argument("--reviewer", metavar="NAME",
                         help="a name kept beside the recorded actor (ledger.actor, else the OS user)")
    approve.add_argument("--reason", metavar="TEXT", help="why (kept on the record)")
    approve.set_defaults(func=approve_cmd)

    reject = sub.add_parser("reject", help="reject, releasing any freeze")
    reject.add_argument("transaction_id", metavar="ID", type=transaction_id)
    reject.add_argument("--reviewer", metavar="NAME",
                        help="a name kept beside the recorded actor (ledger.actor, else the OS user)")
    reject.add_argument("--reason", required=True, metavar="TEXT", help="why (required; kept on the record)")
    reject.set_defaults(func=reject_cmd)


def _ledger(args: argparse.Namespace) -> tuple[Any, Any]:
    from worker.config import load_settings
    from worker.ledger import Ledger

    settings = load_settings(getattr(args, "config", None))
    return settings, Ledger.open(settings.database.url, create=False)  # reads: creates no ledger


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def list_cmd(args: argparse.Namespace) -> int:
    """Print the queue, oldest first; overdue items (older than review.max_age_s) flagged. Transaction ids
    are never shortened or wrapped (they are pasted into ``review approve``); amounts have two decimals."""
    from producers.commands.output import print_table
    from rules.money import format_amount
    from worker.masking import mask_text
    from worker.review_service import queued

    settings, ledger = _ledger(args)
    items = queued(ledger, settings.review.max_age_s, limit=args.limit)
    # A reason is free text (VIP's or the wallet's words may name the patron): masked like `review show`.
    items = [replace(item, reason=mask_text(item.reason) if item.reason else item.reason) for item in items]
    if args.json:
        for item in items:
            print(json.dumps({"transaction_id": item.transaction_id, "type": item.transaction_type,
                              "amount": format_amount(item.amount) if item.amount is not None else None,
                              "age_s": round(item.age_s, 1), "overdue": item.overdue,
                              "matched": list(item.matched), "reason": item.reason, "state": item.state}))
        return 0
    from rich.table import Table

    total, _, overdue = ledger.review_stats(settings.review.max_age_s)
    table = Table(title=f"{total} waiting for review, {overdue} overdue (over {_age(settings.review.max_age_s)})")
    rows = [(item.transaction_id, item.transaction_type or "?", format_amount(item.amount),
             _age(item.age_s) + (" OVERDUE" if item.overdue else ""), ", ".join(item.matched) or "-",
             item.reason or "", item.overdue) for item in items]
    # Ids and amounts are copied: never shortened or wrapped; rule ids and reasons wrap whole.
    for i, name in enumerate(("transaction", "type", "amount", "age")):
        table.add_column(name, justify="right" if name in ("amount", "age") else "left", no_wrap=True,
                         min_width=max((len(str(row[i])) for row in rows), default=len(name)))
    longest_rule = max((len(rule) + 1 for item in items for rule in item.matched), default=1)
    table.add_column("matched rules", min_width=longest_rule, overflow="fold")  # wraps between rule ids
    table.add_column("why", overflow="fold")
    for txid, ttype, amount, age, matched, why, overdue in rows:
        table.add_row(txid, ttype, amount, f"[bold red]{age}[/]" if overdue else age, matched, why)
    print_table(table)
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    """Print one queued transaction with its notifications and events, personal data masked."""
    from producers.commands.txview import render, tx_view
    from worker.review_service import queued_record, waiting_since

    settings, ledger = _ledger(args)
    rec = queued_record(ledger, args.transaction_id)
    view = tx_view(ledger, args.transaction_id) or {"record": {}, "events": [], "notifications": []}
    since = waiting_since(rec, view["events"])
    age = time.time() - since if since is not None else 0.0
    overdue = age > settings.review.max_age_s
    if args.json:
        print(json.dumps({**view, "review": {"since": since, "age_s": round(age, 1), "overdue": overdue}},
                         default=str))
        return 0
    when = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds") if since is not None else "?"
    print(f"waiting for review since {when} ({_age(age)}){'  OVERDUE' if overdue else ''}")
    print(render(view["record"], view["events"], view["notifications"]))
    return 0


def _decide(args: argparse.Namespace, verdict: str) -> int:
    from worker.bootstrap import bootstrap
    from worker.config import load_settings
    from worker.ledger import Ledger
    from worker.ledger.actor import cli_actor
    from worker.review_service import approve, reject

    settings = load_settings(getattr(args, "config", None))
    actor = cli_actor(settings)
    # It acts on a transaction already in the ledger: no ledger there is said, not created empty.
    deps = bootstrap(settings, ledger=Ledger.open(settings.database.url, create=False))
    from worker.review_workspace import command_line_gate

    gate = command_line_gate(deps, actor, args.transaction_id)
    if verdict == "approve":
        rec = approve(deps, args.transaction_id, actor, args.reason, stated_name=args.reviewer, gate=gate)
    else:
        rec = reject(deps, args.transaction_id, actor, args.reason, stated_name=args.reviewer, gate=gate)
    stated = f" ({args.reviewer.strip()})" if (args.reviewer or "").strip() else ""
    if rec.actions and rec.actions[-1].name == "review_first":
        print(f"{rec.transaction_id}: first approval recorded by {actor}{stated}; above review.four_eyes_amount a "
              "second, different reviewer must approve before VIP Connect is called")
        return 0
    print(f"{rec.transaction_id}: {rec.state} by {actor}{stated}")
    return 0


def approve_cmd(args: argparse.Namespace) -> int:
    """Approve one queued transaction through VIP Connect, at most once."""
    return _decide(args, "approve")


def reject_cmd(args: argparse.Namespace) -> int:
    """Reject one queued transaction and release its freeze."""
    return _decide(args, "reject")
