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

_EVENTS = """
  e AS (INSERT INTO events (transaction_id, seq, at, kind, name, status, state, actor, data)
        SELECT t.transaction_id, x.seq, x.at, x.kind, x.name, x.status, x.state, x.actor, x.data
        FROM t, jsonb_to_recordset(CAST(%(events)s AS jsonb))
             AS x(seq integer, at double precision, kind text, name text, status text, state text,
                  actor text, data jsonb)),
  n AS (INSERT INTO notifications (entry_id, kind, route, received_at_ms, status, error, transaction_id,
                                   body, body_sha256, stored_at)
        SELECT CAST(%(n_entry_id)s AS text), CAST(%(n_kind)s AS text), CAST(%(n_route)s AS text),
               CAST(%(n_received_at_ms)s AS bigint), CAST(%(n_status)s AS text), CAST(%(n_error)s AS text),
               CAST(%(n_transaction_id)s AS text), CAST(%(n_body)s AS bytea), CAST(%(n_body_sha256)s AS text),
               CAST(%(now)s AS double precision)
        WHERE CAST(%(n_entry_id)s AS text) IS NOT NULL
        ON CONFLICT (entry_id) DO NOTHING),
  c AS (INSERT INTO patron_cards AS pc (vip_card_number, patron_id, entry_id, received_at_ms, learned_at)
        SELECT CAST(%(c_card)s AS text), CAST(%(c_patron)s AS text), CAST(%(c_entry)s AS text),
               CAST(%(c_received)s AS bigint), CAST(%(now)s AS double precision)
        FROM t WHERE CAST(%(c_card)s AS text) IS NOT NULL
        ON CONFLICT (vip_card_number) DO UPDATE SET patron_id = EXCLUDED.patron_id, entry_id = EXCLUDED.entry_id,
           received_at_ms = EXCLUDED.received_at_ms, learned_at = EXCLUDED.learned_at
        WHERE pc.patron_id <> EXCLUDED.patron_id AND pc.received_at_ms <= EXCLUDED.received_at_ms),
  d AS (INSERT INTO notification_done (entry_id, at)
        SELECT CAST(%(done)s AS text), CAST(%(now)s AS double precision) FROM t WHERE CAST(%(done)s AS text) IS NOT NULL
        ON CONFLICT (entry_id) DO NOTHING)
SELECT count(*) FROM t
"""

INSERT = ("""
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
           RETURNING transaction_id),""" + _EVENTS)  # noqa: S608 - constant text; values are bound parameters

UPDATE = ("""
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
           RETURNING transaction_id),""" + _EVENTS)  # noqa: S608 - constant text; values are bound parameters


def write(conn: Any, *, first: bool, params: dict[str, Any]) -> int:
    """Run the one-statement write on a psycopg connection in autocommit (a prepared statement); how many
    rows of ``transactions`` it wrote (0: the fence refused it, or, on a first write with
    ``session_unread`` true, an open patron session exists). psycopg's IntegrityError when a first write
    finds the row already there."""
    with conn.cursor() as cur:
        cur.execute(INSERT if first else UPDATE, params, prepare=True)
        row = cur.fetchone()
    return int(row[0]) if row else 0
