"""A transaction's write on PostgreSQL in one statement, one round trip.

The generic write (``Ledger.write`` on SQLite) is BEGIN, four or five statements
and COMMIT. On PostgreSQL the same work is one statement of data-modifying CTEs,
run in autocommit (a single statement is atomic): the notification (if any), the
current row (inserted, or updated only if its ``seq`` is still the one the writer
read: the fence), the events (from one JSON array) and the done mark, the last two
only when the row was written. The benchmark measured the generic path at about
ten round trips per notification; this path makes it three or four.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

_EVENTS = """
  e AS (INSERT INTO events (transaction_id, seq, at, kind, name, status, state, actor, data)
        SELECT t.transaction_id, x.seq, x.at, x.kind, x.name, x.status, x.state, x.actor, x.data
        FROM t, jsonb_to_recordset(CAST(:events AS jsonb))
             AS x(seq integer, at double precision, kind text, name text, status text, state text,
                  actor text, data jsonb)),
  n AS (INSERT INTO notifications (entry_id, kind, route, received_at_ms, status, error, transaction_id,
                                   body, body_sha256, stored_at)
        SELECT CAST(:n_entry_id AS text), CAST(:n_kind AS text), CAST(:n_route AS text),
               CAST(:n_received_at_ms AS bigint), CAST(:n_status AS text), CAST(:n_error AS text),
               CAST(:n_transaction_id AS text), CAST(:n_body AS bytea), CAST(:n_body_sha256 AS text),
               CAST(:now AS double precision)
        WHERE CAST(:n_entry_id AS text) IS NOT NULL
        ON CONFLICT (entry_id) DO NOTHING),
  d AS (INSERT INTO notification_done (entry_id, at)
        SELECT CAST(:done AS text), CAST(:now AS double precision) FROM t WHERE CAST(:done AS text) IS NOT NULL
        ON CONFLICT (entry_id) DO NOTHING)
SELECT count(*) FROM t
"""

INSERT = text("""
WITH t AS (INSERT INTO transactions (transaction_id, state, transaction_type, amount, outcome, ruleset_hash,
                                    review_reason, review_since, held_by, deliveries, seq, record,
                                    created_at, updated_at)
           VALUES (CAST(:txid AS text), CAST(:state AS text), CAST(:transaction_type AS text),
                   CAST(:amount AS numeric), CAST(:outcome AS text), CAST(:ruleset_hash AS text),
                   CAST(:review_reason AS text),
                   CASE WHEN CAST(:state AS text) = 'review' THEN CAST(:now AS double precision) END, NULL,
                   CAST(:deliveries AS integer), CAST(:seq AS integer), CAST(:record AS jsonb),
                   CAST(:created_at AS double precision), CAST(:now AS double precision))
           RETURNING transaction_id),""" + _EVENTS)  # noqa: S608 - constant text; values are bound parameters

UPDATE = text("""
WITH t AS (UPDATE transactions SET state = CAST(:state AS text),
                  transaction_type = CAST(:transaction_type AS text), amount = CAST(:amount AS numeric),
                  outcome = CAST(:outcome AS text), ruleset_hash = CAST(:ruleset_hash AS text),
                  review_reason = CAST(:review_reason AS text),
                  review_since = CASE WHEN CAST(:state AS text) <> 'review' THEN NULL
                                      WHEN state = 'review' THEN review_since
                                      ELSE CAST(:now AS double precision) END,
                  deliveries = CAST(:deliveries AS integer), seq = CAST(:seq AS integer),
                  record = CAST(:record AS jsonb), updated_at = CAST(:now AS double precision)
           WHERE transaction_id = CAST(:txid AS text) AND seq = CAST(:seq0 AS integer)
           RETURNING transaction_id),""" + _EVENTS)  # noqa: S608 - constant text; values are bound parameters


def write(conn: Any, *, first: bool, params: dict[str, Any]) -> int:
    """Run the one-statement write on an autocommit connection; how many rows of ``transactions`` it wrote
    (0: the fence refused it). IntegrityError when a first write finds the row already there."""
    return int(conn.execute(INSERT if first else UPDATE, params).scalar_one())
