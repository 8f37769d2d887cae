"""A transaction's write on PostgreSQL in one statement, one round trip.

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

from typing import Any

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


def write(conn: Any, *, first: bool, params: dict[str, Any], parts: frozenset[str] = frozenset(PARTS)) -> int:
    """Run the one-statement write with ``parts`` (see :func:`statement`; ``params`` holds the values of
    those parts) on a psycopg connection in autocommit (a prepared statement); how many rows of
    ``transactions`` it wrote (0: the fence refused it, or, on a first write with ``session_unread``
    true, an open patron session exists). psycopg's IntegrityError when a first write finds the row
    already there; ValueError for a part not in ``PARTS``."""
    with conn.cursor() as cur:
        cur.execute(statement(first, parts), params, prepare=True)
        row = cur.fetchone()
    return int(row[0]) if row else 0
