"""``vipflow labels import|show|codes``: outcome labels (ACH returns, chargebacks, confirmed fraud or good).

Thin: parse, call ``worker.labels``, print. A file with any bad row records nothing and prints every
problem as ``FILE:LINE: problem`` on stderr (exit 2); the ledger failing exits 1 (``producers.exits``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from producers.commands.numbers import transaction_id

IMPORT_HELP = """Record outcome labels from a CSV file, all or nothing (one database transaction).
One row per label: transaction_id,label,date. A header row naming the columns is optional (other
columns are then ignored). label: a NACHA return reason code (R01 Insufficient Funds, R02 Account
Closed, R03, R04, R10 and R29 unauthorized, ... R85: `vipflow labels codes`), chargeback,
confirmed_fraud or confirmed_good. date: YYYY-MM-DD, the day it happened. Every transaction must be
in the ledger; a row that repeats what the ledger holds is not recorded twice. Recorded with the
command-line actor (ledger.actor, else the operating-system user)."""


def add_parser(subparsers: Any) -> None:
    """Register ``labels`` and its subcommands."""
    labels = subparsers.add_parser("labels", help="outcome labels: ACH returns, chargebacks, confirmed fraud or good")
    sub = labels.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    imp = sub.add_parser("import", help="record labels from a CSV file (transaction_id,label,date), all or nothing",
                         description=IMPORT_HELP)
    imp.add_argument("file", type=Path, help="the CSV file ('-': standard input)")
    imp.add_argument("--json", action="store_true", help="print the result as JSON")
    imp.set_defaults(func=import_cmd)
    show = sub.add_parser("show", help="every label recorded for a transaction, who recorded it and from what")
    show.add_argument("transaction_id", type=transaction_id)
    show.add_argument("--json", action="store_true", help="JSON lines, one per label")
    show.set_defaults(func=show_cmd)
    codes = sub.add_parser("codes", help="the labels vipflow accepts: NACHA's return codes and the others")
    codes.add_argument("--json", action="store_true", help="JSON lines, one per label")
    codes.set_defaults(func=codes_cmd)


def _ledger(args: argparse.Namespace) -> tuple[Any, Any]:
    from worker.config import load_settings
    from worker.ledger import Ledger

    settings = load_settings(getattr(args, "config", None))
    return settings, Ledger.open(settings.database.url, create=False)


def import_cmd(args: argparse.Namespace) -> int:
    """Record the file's labels; print how many were recorded (and already recorded), or every problem."""
    import hashlib

    from worker.errors import InputError
    from worker.labels.parse import LabelsRefused, read_csv
    from worker.labels.store import LabelStore
    from worker.ledger.actor import cli_actor

    if str(args.file) == "-":  # a pipe: a bank's return file turned into labels by the operator's own script
        data, name = sys.stdin.buffer.read(), "stdin"
    else:
        try:
            data = args.file.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {args.file} ({exc.strerror}); give a CSV file of labels") from None
        name = args.file.name
    settings, ledger = _ledger(args)
    try:
        rows, problems = read_csv(data, name)  # the ledger checks the rows that parsed in the same pass
        result = LabelStore(ledger.engine).record(rows, actor=cli_actor(settings), source="csv", name=name,
                                                  sha256=hashlib.sha256(data).hexdigest(), problems=problems)
    except LabelsRefused as exc:
        for problem in exc.problems:
            print(f"vipflow labels: {problem.render()}", file=sys.stderr)
        print(f"vipflow labels: {len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''} in {name}; "
              "nothing of it was recorded", file=sys.stderr)
        return 2
    finally:
        ledger.close()
    if args.json:
        print(json.dumps({"file": name, **result.to_dict()}))
    else:
        print(f"{name}: {result.recorded} label{'s' if result.recorded != 1 else ''} recorded, "
              f"{result.already} already recorded (import {result.import_id})")
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    """Every label of one transaction, oldest first; exit 2 when the ledger has no such transaction."""
    from worker.errors import InputError
    from worker.labels.codes import describe
    from worker.labels.store import LabelStore

    _settings, ledger = _ledger(args)
    try:
        if ledger.load(args.transaction_id) is None:
            raise InputError(f"no transaction {args.transaction_id!r} in the ledger")
        labels = LabelStore(ledger.engine).of(args.transaction_id)
    finally:
        ledger.close()
    from datetime import UTC, datetime

    for lab in labels:
        if args.json:
            print(json.dumps(lab.to_dict()))
        else:
            when = datetime.fromtimestamp(lab.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            origin = f"{lab.source} {lab.name}" if lab.name else lab.source
            print(f"{lab.occurred_on.isoformat()}  {describe(lab.label)}  recorded {when} by {lab.actor} ({origin})")
    if not labels and not args.json:
        print(f"no labels for {args.transaction_id}")
    return 0


def codes_cmd(args: argparse.Namespace) -> int:
    """Every label accepted: the return codes (code, name, group, return window) and the others."""
    from worker.labels.codes import OTHER_LABELS, RETURN_CODES

    for rc in RETURN_CODES.values():
        if args.json:
            print(json.dumps({"label": rc.code, "kind": "ach_return", "name": rc.name, "group": rc.group,
                              "window": rc.window, "verdict": "bad"}))
        else:
            print(f"{rc.code}  {rc.group:<14} {rc.window:<5}  {rc.name}")
    for label, (kind, meaning) in OTHER_LABELS.items():
        if args.json:
            print(json.dumps({"label": label, "kind": kind, "name": meaning,
                              "verdict": "good" if kind == "good" else "bad"}))
        else:
            print(f"{label:<16} {meaning}")
    return 0
