"""A transaction's write on PostgreSQL in one statement, one round trip (a statement prepared once per
connection, run through libpq: see :func:`write`).

The generic write (``Ledger.write`` on SQLite) is BEGIN, four or five statements
and COMMIT. On PostgreSQL the same work is one statement of data-modifying CTEs,
run in autocommit (a single statement is atomic): the notification (if any), the
current row (inserted, or updated only if its ``seq`` is still the one the writer
read: the fence), the events (from one JSON array), the VIP card's patron learned
from the notification (``worker.ledger.patron_cards``) and the done mark, the last
three only when the row was written. The benchmark measured the generic path at about
ten round trips per notification; this path makes it three or four.

A first write made by a task that did not read the transaction's patron session
(``session_unread``) is refused when an open session exists for its transaction id:
no row, event, learned card or done mark is written (the notification as received is
kept, as every later write keeps it too), and the task decides again with the session (see
``worker.ledger.session_guard``). The check is one primary-key probe
inside the same statement, instead of a round trip of its own on every notification.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import pq

# The parts after the transaction's row, each its own data-modifying CTE; a write names only those it needs
# (a part left out is a plan node the server neither builds nor runs: ``statement``).
_PARTS = {
    "events": """
  e AS (INSERT INTO events (transaction_id, seq, at, kind, name, status, state, actor, data)
        SELECT t.transaction_id, x.seq, x.at, x.kind, x.name, x.status, x.state, x.actor, x.data
        FROM t, jsonb_to_recordset(CAST(%(events)s AS jsonb))
             AS x(seq integer, at double precision, kind text, name text, status text, state text,
                  actor text, data jsonb))""",
    "notification": """
  n AS (INSERT INTO notifications (entry_id, kind, route, received_at_ms, status, error, transaction_id,
                                   body, body_sha256, stored_at)
        VALUES (CAST(%(n_entry_id)s AS text), CAST(%(n_kind)s AS text), CAST(%(n_route)s AS text),
               CAST(%(n_received_at_ms)s AS bigint), CAST(%(n_status)s AS text), CAST(%(n_error)s AS text),
               CAST(%(n_transaction_id)s AS text), CAST(%(n_body)s AS bytea), CAST(%(n_body_sha256)s AS text),
               CAST(%(now)s AS double precision))
        ON CONFLICT (entry_id) DO NOTHING)""",
    "card": """
  c AS (INSERT INTO patron_cards AS pc (vip_card_number, patron_id, entry_id, received_at_ms, learned_at)
        SELECT CAST(%(c_card)s AS text), CAST(%(c_patron)s AS text), CAST(%(c_entry)s AS text),
               CAST(%(c_received)s AS bigint), CAST(%(now)s AS double precision)
        FROM t
        ON CONFLICT (vip_card_number) DO UPDATE SET patron_id = EXCLUDED.patron_id, entry_id = EXCLUDED.entry_id,
           received_at_ms = EXCLUDED.received_at_ms, learned_at = EXCLUDED.learned_at
        WHERE pc.patron_id <> EXCLUDED.patron_id AND pc.received_at_ms <= EXCLUDED.received_at_ms)""",
    "done": """
  d AS (INSERT INTO notification_done (entry_id, at)
        SELECT CAST(%(done)s AS text), CAST(%(now)s AS double precision) FROM t
        ON CONFLICT (entry_id) DO NOTHING)""",
}
PARTS = tuple(_PARTS)

INSERT = """
WITH t AS (INSERT INTO transactions (transaction_id, state, transaction_type, amount, outcome, ruleset_hash,
                                    review_reason, review_since, held_by, deliveries, seq, record,
                                    created_at, updated_at)
           SELECT CAST(%(txid)s AS text), CAST(%(state)s AS text), CAST(%(transaction_type)s AS text),
                  CAST(%(amount)s AS numeric), CAST(%(outcome)s AS text), CAST(%(ruleset_hash)s AS text),
                  CAST(%(review_reason)s AS text),
                  CASE WHEN CAST(%(state)s AS text) = 'review' THEN CAST(%(now)s AS double precision) END, NULL,
                  CAST(%(deliveries)s AS integer), CAST(%(seq)s AS integer), CAST(%(record)s AS json),
                  CAST(%(created_at)s AS double precision), CAST(%(now)s AS double precision)
           WHERE NOT (CAST(%(session_unread)s AS boolean) AND EXISTS (
                 SELECT 1 FROM patron_sessions WHERE transaction_id = CAST(%(txid)s AS text) AND status = 'open'))
           RETURNING transaction_id)"""

UPDATE = """
WITH t AS (UPDATE transactions SET state = CAST(%(state)s AS text),
                  transaction_type = CAST(%(transaction_type)s AS text), amount = CAST(%(amount)s AS numeric),
                  outcome = CAST(%(outcome)s AS text), ruleset_hash = CAST(%(ruleset_hash)s AS text),
                  review_reason = CAST(%(review_reason)s AS text),
                  review_since = CASE WHEN CAST(%(state)s AS text) <> 'review' THEN NULL
                                      WHEN state = 'review' THEN review_since
                                      ELSE CAST(%(now)s AS double precision) END,
                  deliveries = CAST(%(deliveries)s AS integer), seq = CAST(%(seq)s AS integer),
                  record = CAST(%(record)s AS json), updated_at = CAST(%(now)s AS double precision)
           WHERE transaction_id = CAST(%(txid)s AS text) AND seq = CAST(%(seq0)s AS integer)
           RETURNING transaction_id)"""

_STATEMENTS: dict[tuple[bool, frozenset[str]], str] = {}


def statement(first: bool, parts: frozenset[str]) -> str:
    """The write's text: the transaction's row (INSERT when ``first``, else the fenced UPDATE), then
    ``parts`` (of ``PARTS``) in their fixed order, then ``SELECT count(*) FROM t``. One text per
    combination (at most 32), made once: each is a prepared statement of its own on a connection."""
    key = (first, parts)
    found = _STATEMENTS.get(key)
    if found is None:
        unknown = parts - _PARTS.keys()
        if unknown:
            raise ValueError(f"unknown write parts: {', '.join(sorted(unknown))}")
        clauses = [_PARTS[name] for name in PARTS if name in parts]
        found = _STATEMENTS[key] = ((INSERT if first else UPDATE) + "".join("," + c for c in clauses)
                                    + "\nSELECT count(*) FROM t\n")
    return found


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class _Raw:
    """One write statement as the server prepares it: its name, its text with ``$n`` placeholders, and the
    parameter each ``$n`` takes."""

    name: bytes
    sql: bytes
    names: tuple[str, ...]


_RAW: dict[tuple[bool, frozenset[str]], _Raw] = {}
# The write statements prepared on each connection (a connection is lent to one statement at a time).
_PREPARED: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()


def _raw(first: bool, parts: frozenset[str]) -> _Raw:
    key = (first, parts)
    found = _RAW.get(key)
    if found is None:
        names: list[str] = []

        def number(m: re.Match[str]) -> str:
            if m.group(1) not in names:
                names.append(m.group(1))
            return f"${names.index(m.group(1)) + 1}"

        sql = _PLACEHOLDER.sub(number, statement(first, parts))
        found = _RAW[key] = _Raw(f"vipflow_write_{len(_RAW)}".encode(), sql.encode(), tuple(names))
    return found


def _text(value: Any) -> bytes | None:
    """A parameter in PostgreSQL's text format (bytes go in binary format instead: see :func:`write`)."""
    if value is None:
        return None
    if value is True or value is False:
        return b"t" if value else b"f"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, int | Decimal):
        return str(value).encode()
    raise TypeError(f"cannot send a {type(value).__name__} as a write parameter")


def _check(res: Any) -> None:
    """Raise the psycopg error class of the result's SQLSTATE (UniqueViolation, ...) unless it succeeded."""
    if res.status in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        return
    state = res.error_field(pq.DiagnosticField.SQLSTATE)
    message = (res.error_message or b"").decode("utf-8", "replace").strip() or "the write statement failed"
    try:
        cls: type[psycopg.Error] = psycopg.errors.lookup(state.decode()) if state else psycopg.OperationalError
    except KeyError:
        cls = psycopg.DatabaseError
    raise cls(message)


def write(conn: Any, *, first: bool, params: dict[str, Any], parts: frozenset[str] = frozenset(PARTS)) -> int:
    """Run the one-statement write with ``parts`` (see :func:`statement`; ``params`` holds the values of
    those parts) on a psycopg connection in autocommit; how many rows of ``transactions`` it wrote (0: the
    fence refused it, or, on a first write with ``session_unread`` true, an open patron session exists).

    The statement is prepared once per connection and run through psycopg's libpq layer
    (``conn.pgconn``: ``PQprepare``, then ``PQexecPrepared``, one blocking call that lets other threads run
    while it waits): psycopg's cursor does the same work in several Python steps, each taking the
    interpreter lock back. Measured on one connection alone, a write's client CPU went from 45 to 25
    microseconds. Parameters go in text format (bytes, the notification's body, in binary).

    Raises psycopg's error of the server's SQLSTATE: UniqueViolation (an IntegrityError) when a first
    write finds the row already there, OperationalError when the connection failed; ValueError for a
    part not in ``PARTS``; TypeError for a parameter of a type it cannot send."""
    raw = _raw(first, parts)
    pg = conn.pgconn
    prepared = _PREPARED.get(conn)
    if prepared is None:
        prepared = _PREPARED[conn] = set()
    if raw.name not in prepared:
        _check(pg.prepare(raw.name, raw.sql))
        prepared.add(raw.name)
    values: list[bytes | None] = []
    formats: list[int] = []
    for name in raw.names:
        value = params[name]
        if isinstance(value, bytes):
            values.append(value)
            formats.append(1)
        else:
            values.append(_text(value))
            formats.append(0)
    res = pg.exec_prepared(raw.name, values, formats)
    _check(res)
    found = res.get_value(0, 0) if res.ntuples else None
    return int(found) if found is not None else 0
