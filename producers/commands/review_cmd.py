"""``vipflow review list|show|approve|reject``: thin wrappers over ``worker.review_service``.

Exit 2 when the transaction is not in the queue or the input is incomplete,
1 when VIP Connect or the wallet failed (the transaction stays in review).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``review`` and its four subcommands."""
    review = subparsers.add_parser("review", help="the transactions waiting for a person")
    sub = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")

    ls = sub.add_parser("list", help="queued transactions, oldest first; overdue ones flagged")
    ls.add_argument("--json", action="store_true", help="JSON lines, one per transaction")
    ls.add_argument("--limit", type=int, default=1000, metavar="N", help="at most N (default 1000)")
    ls.set_defaults(func=list_cmd)

    show = sub.add_parser("show", help="one queued transaction: why it waits, its decision and actions")
    show.add_argument("transaction_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="the record as JSON (masked)")
    show.set_defaults(func=show_cmd)

    approve = sub.add_parser("approve", help="approve through VIP Connect (at most once)")
    approve.add_argument("transaction_id", metavar="ID")
    approve.add_argument("--reviewer", required=True, metavar="NAME", help="who decides (kept on the record)")
    approve.add_argument("--reason", metavar="TEXT", help="why (kept on the record)")
    approve.set_defaults(func=approve_cmd)

    reject = sub.add_parser("reject", help="reject, releasing any freeze")
    reject.add_argument("transaction_id", metavar="ID")
    reject.add_argument("--reviewer", required=True, metavar="NAME", help="who decides (kept on the record)")
    reject.add_argument("--reason", required=True, metavar="TEXT", help="why (required; kept on the record)")
    reject.set_defaults(func=reject_cmd)


def _stores(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from worker.config import load_settings
    from worker.store.connection import connect
    from worker.store.records import RecordStore
    from worker.store.review import ReviewQueue

    settings = load_settings(getattr(args, "config", None))
    client = connect(settings.redis)
    prefix = settings.redis.key_prefix
    return settings, RecordStore(client, prefix), ReviewQueue(client, prefix)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def list_cmd(args: argparse.Namespace) -> int:
    """Print the queue, oldest first; overdue items (older than review.max_age_s) flagged."""
    from worker.review_service import queued

    settings, records, reviews = _stores(args)
    items = queued(records, reviews, settings.review.max_age_s, limit=args.limit)
    if args.json:
        for item in items:
            print(json.dumps({"transaction_id": item.transaction_id, "type": item.transaction_type,
                              "amount": item.amount, "age_s": round(item.age_s, 1), "overdue": item.overdue,
                              "matched": list(item.matched), "reason": item.reason, "state": item.state}))
        return 0
    from rich.console import Console
    from rich.table import Table

    total = reviews.count()
    overdue = sum(i.overdue for i in items)
    table = Table(title=f"{total} waiting for review, {overdue} overdue (over {_age(settings.review.max_age_s)})")
    for name in ("transaction", "type", "amount", "age", "matched rules", "why"):
        table.add_column(name, justify="right" if name in ("amount", "age") else "left")
    for item in items:
        age = _age(item.age_s) + (" OVERDUE" if item.overdue else "")
        table.add_row(item.transaction_id, item.transaction_type or "?", item.amount or "?",
                      f"[bold red]{age}[/]" if item.overdue else age, ", ".join(item.matched) or "-",
                      item.reason or "")
    Console(highlight=False).print(table)
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    """Print one queued transaction, personal data masked."""
    from worker.command import render
    from worker.masking import mask_mapping
    from worker.review_service import NotInReview, queued_record

    settings, records, reviews = _stores(args)
    try:
        rec = queued_record(records, reviews, args.transaction_id)
    except NotInReview as exc:
        print(f"vipflow review: {exc}", file=sys.stderr)
        return 2
    item = reviews.get(args.transaction_id)
    data = mask_mapping(rec.to_dict())
    age = time.time() - item.enqueued_at if item is not None else 0.0
    if args.json:
        print(json.dumps({**data, "review": {"enqueued_at": item.enqueued_at if item else None,
                                             "age_s": round(age, 1),
                                             "overdue": age > settings.review.max_age_s}}, default=str))
        return 0
    since = datetime.fromtimestamp(item.enqueued_at, UTC).isoformat(timespec="seconds") if item else "?"
    flag = "  OVERDUE" if age > settings.review.max_age_s else ""
    print(f"waiting for review since {since} ({_age(age)}){flag}")
    print(render(data))
    return 0


def _decide(args: argparse.Namespace, verdict: str) -> int:
    from worker.bootstrap import bootstrap
    from worker.config import load_settings
    from worker.review_service import NotInReview, ReviewActionFailed, ReviewInputError, approve, reject

    settings = load_settings(getattr(args, "config", None))
    deps = bootstrap(settings)
    try:
        if verdict == "approve":
            rec = approve(deps, args.transaction_id, args.reviewer, args.reason)
        else:
            rec = reject(deps, args.transaction_id, args.reviewer, args.reason)
    except (NotInReview, ReviewInputError) as exc:
        print(f"vipflow review: {exc}", file=sys.stderr)
        return 2
    except ReviewActionFailed as exc:
        print(f"vipflow review: {exc}", file=sys.stderr)
        return 1
    print(f"{rec.transaction_id}: {rec.state} by {args.reviewer.strip()}")
    return 0


def approve_cmd(args: argparse.Namespace) -> int:
    """Approve one queued transaction through VIP Connect, at most once."""
    return _decide(args, "approve")


def reject_cmd(args: argparse.Namespace) -> int:
    """Reject one queued transaction and release its freeze."""
    return _decide(args, "reject")
