"""``vipflow db prune``: the ledger's only delete path, and the audit of every run.

What goes, once it is older than the cutoff (now minus ``ledger.retention_days``):

- every transaction whose state is final (``states.FINAL``) and whose current row
  has not changed since the cutoff (``updated_at``), with its events, its
  notifications (and their "done" marks), its dead letters, its outcome labels (their
  ``label_imports`` rows stay: the audit of who recorded what) and its patron session
  when that is older than the cutoff too; a transaction that received a notification
  after the cutoff stays;
- every notification received before the cutoff that belongs to no transaction
  (those archived as invalid), with its "done" mark and dead letters;
- every patron session (personal data) older than the cutoff, by the latest time its
  row records (``opened_at``, else ``created_at``), whose transaction id names no
  transaction once this run's transactions are gone: its transaction was pruned (now
  or by an earlier run, while the session was younger) or never came (an unused id).
  A session whose transaction is kept stays, whatever its age;
- every API token use (``api_token_uses.at``) and every workspace event (logins, user
  changes: ``workspace_events.at``) older than the cutoff. The human acts on a
  transaction are its ``human`` events, which go with it.

What stays, whatever its age:

- ``patron_cards``: one row per card, kept while the card is in use; its time is not
  updated on every sighting (only when the card's patron changes), so its age says
  nothing about whether the card is still seen;
- ``rulesets``, ``ruleset_history`` (the rule texts and which went live when): small,
  and needed to explain every decision kept;
- ``label_imports`` and ``prune_runs``: the audit itself (who recorded labels, who
  deleted what);
- ``users``, ``api_tokens`` and the lists (``lists``, ``list_entries``,
  ``list_changes``, ``list_change_entries``): configuration in use, not traffic.

Deletes run in batches of ``batch`` rows (transactions, notifications, sessions,
token uses, workspace events), each its own database transaction, so a prune of
years of data never holds one giant transaction. On PostgreSQL each batch does
``SET LOCAL vipflow.prune = 'on'``: the append-only triggers (migrations 0002, 0003,
0008) refuse every other DELETE. Each run is a row of ``prune_runs`` (who, when, the
cutoff, how many rows of each kind went), whose counts are updated in the same
database transaction as each batch: the audit stays exact when a run stops midway
(its ``finished_at`` then stays empty). A dry run only counts, and records nothing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from worker.errors import LedgerUnavailable, reason
from worker.ledger import tables as t
from worker.ledger.states import FINAL

DAY_S = 86_400
DEFAULT_BATCH = 500
# What `vipflow db status` counts: the tables that grow with traffic.
COUNTED = ("transactions", "events", "notifications", "dead_letters", "patron_sessions", "api_token_uses",
           "workspace_events")


def now() -> float:
    """The wall clock, epoch seconds (its own name so that tests can move it)."""
    return time.time()


@dataclass(frozen=True)
class PruneReport:
    """One prune: when, by whom, the cutoff (epoch seconds) and how many rows of each kind went (or would go)."""

    run_id: int | None  # the prune_runs row; None for a dry run (which records nothing)
    dry_run: bool
    actor: str
    retention_days: int
    cutoff_at: float
    started_at: float
    finished_at: float
    transactions: int
    events: int
    notifications: int
    dead_letters: int
    patron_sessions: int
    api_token_uses: int
    workspace_events: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _final_states() -> list[str]:
    return sorted(str(s) for s in FINAL)


def _prunable_transactions(cutoff_at: float) -> Select[Any]:
    """The ids of final transactions untouched since ``cutoff_at`` with no notification after it."""
    tx, n = t.transactions.c, t.notifications.c
    late = select(n.entry_id).where(n.transaction_id == tx.transaction_id,
                                    n.received_at_ms >= int(cutoff_at * 1000)).exists()
    return select(tx.transaction_id).where(tx.state.in_(_final_states()), tx.updated_at < cutoff_at, ~late)


def _orphan_notifications(cutoff_at: float) -> Select[Any]:
    """The entry ids of notifications received before ``cutoff_at`` that belong to no transaction."""
    tx, n = t.transactions.c, t.notifications.c
    has_tx = select(tx.transaction_id).where(tx.transaction_id == n.transaction_id).exists()
    return select(n.entry_id).where(n.received_at_ms < int(cutoff_at * 1000), ~has_tx)


def _old_session(cutoff_at: float) -> Any:
    """A patron session whose latest time (``opened_at``, else ``created_at``) is before ``cutoff_at``."""
    s = t.patron_sessions.c
    return and_(s.created_at < cutoff_at, or_(s.opened_at.is_(None), s.opened_at < cutoff_at))


def _unused_session(cutoff_at: float) -> Any:
    """A patron session older than ``cutoff_at`` whose transaction id names no transaction."""
    tx, s = t.transactions.c, t.patron_sessions.c
    has_tx = select(tx.transaction_id).where(tx.transaction_id == s.transaction_id).exists()
    return and_(_old_session(cutoff_at), ~has_tx)


def _unused_sessions(cutoff_at: float) -> Select[Any]:
    """The transaction ids of patron sessions older than ``cutoff_at`` that name no transaction."""
    return select(t.patron_sessions.c.transaction_id).where(_unused_session(cutoff_at))


def _old_rows(table: Any, cutoff_at: float) -> Select[Any]:
    """The ids of ``table``'s rows (``api_token_uses``, ``workspace_events``) whose ``at`` is before ``cutoff_at``."""
    return select(table.c.id).where(table.c.at < cutoff_at)


def _allow_delete(conn: Connection) -> None:
    # Only for this database transaction: the trigger of migration 0002 lets this DELETE through.
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL vipflow.prune = 'on'"))


def _count(conn: Connection, q: Select[Any]) -> int:
    return int(conn.execute(select(func.count()).select_from(q.subquery())).scalar_one())


def _dry_run(engine: Engine, cutoff_at: float) -> dict[str, int]:
    tx_ids, orphans = _prunable_transactions(cutoff_at), _orphan_notifications(cutoff_at)
    n, ev, dl = t.notifications.c, t.events.c, t.dead_letters.c
    tx_notes = select(n.entry_id).where(n.transaction_id.in_(tx_ids))
    s = t.patron_sessions.c
    # The sessions both steps of a run delete: those of its transactions and those of no transaction.
    sessions = select(s.transaction_id).where(_old_session(cutoff_at), or_(
        s.transaction_id.in_(tx_ids), s.transaction_id.in_(_unused_sessions(cutoff_at))))
    with engine.connect() as conn:
        return {
            "transactions": _count(conn, tx_ids),
            "events": _count(conn, select(ev.seq).where(ev.transaction_id.in_(tx_ids))),
            "notifications": _count(conn, tx_notes) + _count(conn, orphans),
            "dead_letters": _count(conn, select(dl.id).where(or_(
                dl.transaction_id.in_(tx_ids), dl.entry_id.in_(tx_notes), dl.entry_id.in_(orphans)))),
            "patron_sessions": _count(conn, sessions),
            "api_token_uses": _count(conn, _old_rows(t.api_token_uses, cutoff_at)),
            "workspace_events": _count(conn, _old_rows(t.workspace_events, cutoff_at)),
        }


_NOTHING = {"transactions": 0, "events": 0, "notifications": 0, "dead_letters": 0, "patron_sessions": 0,
            "api_token_uses": 0, "workspace_events": 0}


def _delete_transactions(conn: Connection, cutoff_at: float, batch: int, after: Any) -> tuple[dict[str, int], Any]:
    """One batch: up to ``batch`` prunable transactions after id ``after``, and everything of theirs (their
    patron sessions only when older than ``cutoff_at`` too); returns the counts and where the next batch
    starts (None: this was the last)."""
    tx = t.transactions.c
    q = _prunable_transactions(cutoff_at).order_by(tx.transaction_id).limit(batch)
    if after is not None:  # keyset: each batch starts where the last one stopped, never rescans
        q = q.where(tx.transaction_id > after)
    if conn.dialect.name == "postgresql":
        # A writer holding one of these rows is mid-write: skip it (the next prune takes it). The
        # writer, if it comes second, finds its row gone and raises LockLost: never a half-deleted one.
        q = q.with_for_update(of=t.transactions, skip_locked=True)
    ids = list(conn.execute(q).scalars())
    if not ids:
        return dict(_NOTHING), None
    n, dl = t.notifications.c, t.dead_letters.c
    entry_ids = list(conn.execute(select(n.entry_id).where(n.transaction_id.in_(ids))).scalars())
    dead = conn.execute(delete(t.dead_letters).where(or_(dl.transaction_id.in_(ids), dl.entry_id.in_(entry_ids))))
    conn.execute(delete(t.notification_done).where(t.notification_done.c.entry_id.in_(entry_ids)))
    events = conn.execute(delete(t.events).where(t.events.c.transaction_id.in_(ids)))
    conn.execute(delete(t.labels).where(t.labels.c.transaction_id.in_(ids)))
    notes = conn.execute(delete(t.notifications).where(n.entry_id.in_(entry_ids)))
    txs = conn.execute(delete(t.transactions).where(tx.transaction_id.in_(ids)))
    # A younger session stays: _delete_unused_sessions takes it, with no transaction now, once it is old.
    sessions = conn.execute(delete(t.patron_sessions).where(t.patron_sessions.c.transaction_id.in_(ids),
                                                            _old_session(cutoff_at)))
    counts = {**_NOTHING, "transactions": txs.rowcount, "events": events.rowcount,
              "notifications": notes.rowcount, "dead_letters": dead.rowcount, "patron_sessions": sessions.rowcount}
    return counts, ids[-1] if len(ids) == batch else None


def _delete_orphans(conn: Connection, cutoff_at: float, batch: int, after: Any) -> tuple[dict[str, int], Any]:
    """One batch: up to ``batch`` old notifications of no transaction after ``after`` (receipt ms, entry id),
    with their marks and dead letters; returns the counts and where the next batch starts (None: done)."""
    n = t.notifications.c
    q = (_orphan_notifications(cutoff_at).add_columns(n.received_at_ms)
         .order_by(n.received_at_ms, n.entry_id).limit(batch))
    if after is not None:
        ms, eid = after
        q = q.where((n.received_at_ms > ms) | and_(n.received_at_ms == ms, n.entry_id > eid))
    rows = list(conn.execute(q))
    if not rows:
        return dict(_NOTHING), None
    entry_ids = [r.entry_id for r in rows]
    dead = conn.execute(delete(t.dead_letters).where(t.dead_letters.c.entry_id.in_(entry_ids)))
    conn.execute(delete(t.notification_done).where(t.notification_done.c.entry_id.in_(entry_ids)))
    notes = conn.execute(delete(t.notifications).where(n.entry_id.in_(entry_ids)))
    counts = {**_NOTHING, "notifications": notes.rowcount, "dead_letters": dead.rowcount}
    last = rows[-1]
    return counts, (last.received_at_ms, last.entry_id) if len(rows) == batch else None


def _delete_unused_sessions(conn: Connection, cutoff_at: float, batch: int,
                            after: Any) -> tuple[dict[str, int], Any]:
    """One batch: up to ``batch`` patron sessions older than ``cutoff_at`` that name no transaction (never used,
    or pruned while the session was younger), after transaction id ``after``; returns the counts and where the
    next batch starts (None: done). Runs after _delete_transactions: "no transaction" is after its deletes."""
    s = t.patron_sessions.c
    q = _unused_sessions(cutoff_at).order_by(s.transaction_id).limit(batch)
    if after is not None:
        q = q.where(s.transaction_id > after)
    ids = list(conn.execute(q).scalars())
    if not ids:
        return dict(_NOTHING), None
    # The DELETE checks again: a transaction written for one of these ids since the SELECT keeps its session.
    gone = conn.execute(delete(t.patron_sessions).where(s.transaction_id.in_(ids), _unused_session(cutoff_at)))
    return {**_NOTHING, "patron_sessions": gone.rowcount}, ids[-1] if len(ids) == batch else None


def _delete_old_rows(table: Any, key: str) -> Any:
    """The batch step for ``table`` (``api_token_uses``, ``workspace_events``): up to ``batch`` rows whose ``at``
    is before the cutoff, after id ``after`` (keyset by id); its count goes under ``key``."""
    def step(conn: Connection, cutoff_at: float, batch: int, after: Any) -> tuple[dict[str, int], Any]:
        q = _old_rows(table, cutoff_at).order_by(table.c.id).limit(batch)
        if after is not None:
            q = q.where(table.c.id > after)
        ids = list(conn.execute(q).scalars())
        if not ids:
            return dict(_NOTHING), None
        gone = conn.execute(delete(table).where(table.c.id.in_(ids)))
        return {**_NOTHING, key: gone.rowcount}, ids[-1] if len(ids) == batch else None

    return step


# In this order: unused sessions are those whose transaction is gone once the transactions' step is done.
_STEPS = (_delete_transactions, _delete_orphans, _delete_unused_sessions,
          _delete_old_rows(t.api_token_uses, "api_token_uses"),
          _delete_old_rows(t.workspace_events, "workspace_events"))
_RECORDED = ("transactions", "events", "notifications", "patron_sessions", "api_token_uses",
             "workspace_events")  # the counts prune_runs keeps (dead letters: in the report only)


def _run(engine: Engine, run_id: int, cutoff_at: float, batch: int) -> dict[str, int]:
    totals = dict(_NOTHING)
    runs = t.prune_runs.c
    for step in _STEPS:
        after: Any = None
        while True:
            with engine.begin() as conn:
                _allow_delete(conn)
                done, after = step(conn, cutoff_at, batch, after)
                conn.execute(update(t.prune_runs).where(runs.id == run_id).values(
                    {runs[key]: runs[key] + done[key] for key in _RECORDED}))
            for key, value in done.items():
                totals[key] += value
            if after is None:
                break
    return totals


def prune(engine: Engine, *, retention_days: int, actor: str, dry_run: bool = False,
          batch: int = DEFAULT_BATCH) -> PruneReport:
    """Delete what is older than ``retention_days`` (see the module's docstring) and record the run;
    with ``dry_run`` only count it. LedgerUnavailable when the database fails (what went before stays
    recorded in ``prune_runs``)."""
    if retention_days < 1 or batch < 1:
        raise ValueError("retention_days and batch must be at least 1")
    started = now()
    cutoff_at = started - retention_days * DAY_S
    run_id: int | None = None
    try:
        if dry_run:
            counts = _dry_run(engine, cutoff_at)
            finished = now()
        else:
            with engine.begin() as conn:
                result = conn.execute(insert(t.prune_runs).values(
                    started_at=started, cutoff_at=cutoff_at, retention_days=retention_days, actor=actor,
                    **dict.fromkeys(_RECORDED, 0)))
                run_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            counts = _run(engine, run_id, cutoff_at, batch)
            finished = now()
            with engine.begin() as conn:
                conn.execute(update(t.prune_runs).where(t.prune_runs.c.id == run_id).values(finished_at=finished))
    except SQLAlchemyError as exc:
        recorded = f"; what it deleted before is recorded in prune_runs row {run_id}" if run_id else ""
        raise LedgerUnavailable(f"cannot prune the ledger: the database failed "
                                f"({reason(exc)}){recorded}") from None
    return PruneReport(run_id=run_id, dry_run=dry_run, actor=actor, retention_days=retention_days,
                       cutoff_at=cutoff_at, started_at=started, finished_at=finished, **counts)


def table_counts(engine: Engine) -> dict[str, int]:
    """How many rows the ledger's main tables hold (``COUNTED``); LedgerUnavailable when it does not answer."""
    try:
        with engine.connect() as conn:
            return {name: int(conn.execute(select(func.count()).select_from(t.metadata.tables[name])).scalar_one())
                    for name in COUNTED}
    except SQLAlchemyError as exc:
        raise LedgerUnavailable(f"cannot count the ledger's rows: the database failed ({reason(exc)})") \
            from None
