"""``vipflow db upgrade|status|prune``: the ledger's schema, what it holds, and its retention.

Thin: parse, call ``worker.ledger.schema`` / ``worker.ledger.prune``, print.
Exit 2 for a bad configuration, 1 when the database fails or does not answer
(one line, through ``producers.cli``'s handler), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``db`` and its three subcommands."""
    db = subparsers.add_parser("db", help="the ledger's database: migrations, status, retention")
    sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")

    up = sub.add_parser("upgrade", help="apply the ledger's migrations to database.url")
    up.set_defaults(func=upgrade_cmd)

    status = sub.add_parser("status", help="the schema's revision against this code's, and row counts")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(func=status_cmd)

    prune = sub.add_parser("prune", help="delete final transactions, unused patron sessions, API token uses "
                                         "and workspace events older than ledger.retention_days "
                                         "(the only delete path; each run is recorded)")
    prune.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    prune.add_argument("--json", action="store_true", help="one JSON object")
    prune.set_defaults(func=prune_cmd)


def _engine(args: argparse.Namespace, *, create: bool = False) -> tuple[Any, Any]:
    # Only `db upgrade` creates a SQLite ledger; status and prune on a missing file say so (NoLedger, exit 2).
    from worker.config import load_settings
    from worker.ledger.schema import make_engine

    settings = load_settings(getattr(args, "config", None))
    return settings, make_engine(settings.database.url, pool_size=1, create=create)


def _where(engine: Any) -> str:
    from worker.ledger.schema import shown

    return shown(engine)


def upgrade_cmd(args: argparse.Namespace) -> int:
    """Apply the migrations; print ``before -> after``."""
    from alembic.util import CommandError

    from worker.errors import LedgerError
    from worker.ledger.schema import upgrade

    _, engine = _engine(args, create=True)
    try:
        before, after = upgrade(engine)
    except CommandError as exc:  # e.g. the database is at a revision this code does not know
        raise LedgerError(f"cannot upgrade the ledger at {_where(engine)}: {exc}; "
                          "run the vipflow version that migrated it") from None
    finally:
        engine.dispose()
    if before == after:
        print(f"ledger at {_where(engine)}: already at {after} ({engine.dialect.name})")
    else:
        print(f"ledger at {_where(engine)}: {before or 'empty'} -> {after} ({engine.dialect.name})")
    return 0


def status_cmd(args: argparse.Namespace) -> int:
    """Print the current and head revisions, the dialect and the row counts (counts only when migrated)."""
    from worker.ledger.prune import table_counts
    from worker.ledger.schema import current_revision, head_revision

    _, engine = _engine(args)
    try:
        current, head = current_revision(engine), head_revision()
        counts = table_counts(engine) if current is not None else {}
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"database": _where(engine), "dialect": engine.dialect.name, "current": current,
                          "head": head, "up_to_date": current == head, "counts": counts}))
        return 0
    print(f"database  {_where(engine)} ({engine.dialect.name})")
    note = "up to date" if current == head else "run `vipflow db upgrade`"
    print(f"schema    {current or 'empty'} (this code: {head}; {note})")
    for name, n in counts.items():
        print(f"{name:<16} {n:>12,}")
    return 0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def prune_cmd(args: argparse.Namespace) -> int:
    """Prune what is older than ``ledger.retention_days`` (or count it with --dry-run); print the counts."""
    from producers.commands.output import plural
    from worker.ledger.actor import cli_actor
    from worker.ledger.prune import prune
    from worker.ledger.schema import ensure_schema

    settings, engine = _engine(args)
    try:
        ensure_schema(engine)
        report = prune(engine, retention_days=settings.ledger.retention_days, actor=cli_actor(settings),
                       dry_run=args.dry_run)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    verb = "would delete" if report.dry_run else "deleted"
    print(f"{verb} {plural(report.transactions, 'transaction')} ({plural(report.events, 'event')}), "
          f"{plural(report.notifications, 'notification')} and {plural(report.dead_letters, 'dead letter')} "
          f"older than {_iso(report.cutoff_at)} "
          f"(ledger.retention_days {report.retention_days})")
    print(f"{verb} {plural(report.patron_sessions, 'patron session')}, "
          f"{plural(report.api_token_uses, 'API token use')} and "
          f"{plural(report.workspace_events, 'workspace event')} older than the same cutoff")
    if report.run_id is not None:
        print(f"recorded as prune run {report.run_id} by {report.actor}")
    return 0
