"""How one write of a transaction reaches the database: the current row, its events, the notification,
the VIP card's patron it teaches and the done mark, all or nothing, fenced by the row's ``seq``.

``write_postgresql`` runs it as one statement (``pgwrite``); ``write_generic`` as one database
transaction of several statements (SQLite). Both raise LockLost when another writer got there first
(the transaction exists already, or its ``seq`` moved on) and LedgerUnavailable on a database failure.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import Engine, insert, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from worker.errors import LedgerUnavailable, reason
from worker.ledger import hotconn, pgwrite
from worker.ledger import tables as t
from worker.ledger.patron_cards import CardSeen, learn
from worker.ledger.record import TransactionRecord, encode_json
from worker.ledger.session_guard import SessionUnread, open_session_exists
from worker.ledger.states import State
from worker.store.archive import ArchivedNotification
from worker.store.locks import LockLost


def unavailable(doing: str, exc: BaseException) -> LedgerUnavailable:
    """The error for a database failure while ``doing`` (retried by the task)."""
    return LedgerUnavailable(f"cannot {doing}: the ledger's database failed ({reason(exc)}); "
                             "check that it is up (the work is retried)")


def created_elsewhere(transaction_id: str) -> LockLost:
    """A first write found the transaction already there."""
    return LockLost(f"transaction {transaction_id} was created by another writer; "
                    "another delivery will finish the work")


def changed_elsewhere(transaction_id: str) -> LockLost:
    """The transaction's ``seq`` moved on since this writer read it."""
    return LockLost(f"transaction {transaction_id} changed under this writer (its lock expired); "
                    "another delivery will finish the work")


def insert_ignore(conn: Any, table: Any, rows: Sequence[dict[str, Any]], key: str) -> None:
    """INSERT ... ON CONFLICT DO NOTHING in either dialect."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(index_elements=[key]), rows)
    else:
        from sqlalchemy.dialects.sqlite import insert as lite_insert

        conn.execute(lite_insert(table).on_conflict_do_nothing(index_elements=[key]), rows)


NOTE_COLUMNS = ("entry_id", "kind", "route", "received_at_ms", "status", "error", "transaction_id", "body",
                 "body_sha256")


def note_row(n: ArchivedNotification) -> dict[str, Any]:
    return {"entry_id": n.entry_id, "kind": n.kind, "route": n.route, "received_at_ms": n.received_at,
            "status": n.status, "error": n.error, "transaction_id": n.transaction_id, "body": n.body,
            "body_sha256": n.body_sha256, "stored_at": time.time()}


def fetch_one_postgresql(engine: Engine, sql: str, params: Sequence[Any], doing: str) -> dict[str, Any] | None:
    """One row of a constant ``sql`` (``%s`` placeholders) as a dict by column name, or None: on the
    hot connection in autocommit (``hotconn``), a prepared statement, one round trip (the hot
    path's reads: no SQLAlchemy work per call). Raises LedgerUnavailable while ``doing``."""
    def use(conn: Any) -> tuple[Any, list[str]]:
        with conn.cursor() as cur:
            cur.execute(sql, params, prepare=True)
            return cur.fetchone(), [d.name for d in cur.description or ()]

    try:
        row, names = hotconn.run(engine, use, (psycopg.Error,))
    except (SQLAlchemyError, psycopg.Error) as exc:
        raise unavailable(doing, exc) from None
    return None if row is None else dict(zip(names, row, strict=True))


def write_postgresql(engine: Engine, prev_seq: int | None, prev_state: str | None, txid: str, row: dict[str, Any],
                     stored: TransactionRecord, events: list[dict[str, Any]],
                     notification: ArchivedNotification | None, done_entry: str | None, now: float,
                     card: CardSeen | None = None, session_unread: bool = False) -> None:
    """The write as one statement (``pgwrite``) on a hot connection, in autocommit.
    ``prev_seq`` None: the transaction's first write (refused when ``session_unread`` and an open patron
    session exists: ``worker.ledger.session_guard``). Raises LockLost, SessionUnread, LedgerUnavailable."""
    params = {**row, "txid": txid, "seq0": prev_seq or 0, "now": now, "session_unread": session_unread,
              "created_at": stored.created_at, "record": stored.to_json()}
    parts = []  # only the parts this write needs: see pgwrite.statement
    if events:
        parts.append("events")
        params["events"] = encode_json(events)
    if notification is not None:
        parts.append("notification")
        note = note_row(notification)
        params.update((f"n_{k}", note[k]) for k in NOTE_COLUMNS)
    if card is not None:
        parts.append("card")
        params.update(card.params())
    if done_entry:
        parts.append("done")
        params["done"] = done_entry
    doing = f"record transaction {txid}"
    chosen = frozenset(parts)
    try:
        # A hot connection, in autocommit (``hotconn``): no pool work per statement.
        written = hotconn.run(engine, lambda conn: pgwrite.write(conn, first=prev_seq is None, params=params,
                                                                  parts=chosen),
                              (psycopg.Error,))
    except psycopg.errors.IntegrityError:
        raise created_elsewhere(txid) from None
    except (SQLAlchemyError, psycopg.Error) as exc:
        raise unavailable(doing, exc) from None
    if written != 1:
        # A first write that wrote nothing and raised no conflict was stopped by the session guard.
        raise SessionUnread(txid) if prev_seq is None and session_unread else changed_elsewhere(txid)


def write_generic(engine: Engine, prev_seq: int | None, prev_state: str | None, txid: str, row: dict[str, Any],
                  stored: TransactionRecord, events: list[dict[str, Any]],
                  notification: ArchivedNotification | None, done_entry: str | None, now: float,
                  card: CardSeen | None = None, session_unread: bool = False) -> None:
    """The write as one database transaction of several statements (SQLite). Raises LockLost,
    SessionUnread (a first write with ``session_unread`` when an open patron session exists),
    LedgerUnavailable."""
    values = {**row, "record": stored.to_dict()}
    event_rows = [{**e, "transaction_id": txid} for e in events]
    try:
        with engine.begin() as conn:
            if prev_seq is None and session_unread and open_session_exists(conn, txid):
                raise SessionUnread(txid)
            if notification is not None:
                insert_ignore(conn, t.notifications, [note_row(notification)], "entry_id")
            if prev_seq is None:
                conn.execute(insert(t.transactions).values(
                    transaction_id=txid, created_at=stored.created_at,
                    review_since=now if stored.state == State.REVIEW else None, **values))
            else:
                if stored.state != State.REVIEW:
                    values["review_since"] = None
                elif prev_state != State.REVIEW:
                    values["review_since"] = now  # staying in review keeps the time it entered
                done = conn.execute(update(t.transactions).where(
                    t.transactions.c.transaction_id == txid, t.transactions.c.seq == prev_seq).values(**values))
                if done.rowcount != 1:
                    raise changed_elsewhere(txid)
            if event_rows:
                conn.execute(insert(t.events), event_rows)
            if card is not None:
                learn(conn, card, now)
            if done_entry:
                insert_ignore(conn, t.notification_done, [{"entry_id": done_entry, "at": now}], "entry_id")
    except IntegrityError:
        raise created_elsewhere(txid) from None
    except SQLAlchemyError as exc:
        raise unavailable(f"record transaction {txid}", exc) from None
