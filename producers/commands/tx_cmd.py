"""``vipflow tx show ID [--json] [--rules]``: one transaction from the ledger (``producers.commands.txview``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from producers.commands.numbers import transaction_id


def add_parser(subparsers: Any) -> None:
    """Register ``tx`` and ``tx show``."""
    tx: argparse.ArgumentParser = subparsers.add_parser("tx", help="inspect transactions in the ledger")
    tx_sub = tx.add_subparsers(dest="tx_command", required=True, metavar="ACTION")
    show = tx_sub.add_parser("show", help="show one transaction: its state, decision, notifications and events")
    show.add_argument("transaction_id", metavar="ID", type=transaction_id)
    show.add_argument("--json", action="store_true",
                      help="print {record, events, notifications, rules?} as JSON (masked)")
    show.add_argument("--rules", action="store_true", help="also print the exact rule text that decided it")
    show.set_defaults(func=run_tx_show)


def run_tx_show(args: argparse.Namespace) -> int:
    """Print one transaction from the ledger, personal data masked; InputError (exit 2) when the ledger
    knows nothing of it."""
    from producers.commands.txview import render, render_labels, render_refused, render_rules, tx_view
    from worker.config import load_settings
    from worker.errors import InputError
    from worker.ledger import Ledger

    settings = load_settings(getattr(args, "config", None))
    with Ledger.open(settings.database.url, create=False) as ledger:  # its failures: one line from producers.exits
        view = tx_view(ledger, args.transaction_id, rules=bool(getattr(args, "rules", False)))
    if view is None:
        from sqlalchemy.engine import make_url

        where = make_url(settings.database.url).render_as_string(hide_password=True)
        raise InputError(f"no record of transaction {args.transaction_id} in the ledger at {where}; "
                         "check the id (vipflow review list shows those waiting) and database.url")
    if args.json:
        print(json.dumps(view, indent=2, default=str))
        return 0
    if view["record"] is None:  # only notifications that were refused (invalid): nothing was decided
        print(render_refused(args.transaction_id, view["notifications"]))
        return 0
    print(render(view["record"], view["events"], view["notifications"]))
    print(render_labels(view["labels"]))
    if "rules" in view:
        print(render_rules(view["record"], view["rules"]))
    return 0
