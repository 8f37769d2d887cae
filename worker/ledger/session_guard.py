"""The guard that lets a task skip reading its patron session: most notifications follow none.

Reading the transaction's patron session (``worker.ledger.sessions``) before deciding was a
database round trip on every notification. A first delivery may instead decide as if there
were no open session (``PatronFinder(defer_session=True)``) and make its first write of the
transaction conditional: the write is refused, nothing of the transaction written (on
PostgreSQL the notification as received may be kept: later writes keep it too), when an open
session exists for the transaction id (one primary-key probe inside the same statement on
PostgreSQL; a SELECT in the same database transaction on SQLite). Nothing happened outside yet (every
action's ``started`` step is written before its effect), so the task decides again, reading
the session. The decision written is therefore always the one the session would have given.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select

from worker.errors import StoreError
from worker.ledger import tables as t


class SessionUnread(StoreError):
    """A first write made without reading the patron session found an open one (see the module
    docstring): nothing of the transaction was written. The pipeline decides again, reading it; a
    caller that does not catch it has the delivery retried (a ``StoreError``), and the next delivery
    reads the session."""

    def __init__(self, transaction_id: str):
        self.transaction_id = transaction_id
        super().__init__(f"transaction {transaction_id} has an open patron session that its decision did not "
                         "read; it is decided again with it")


def open_session_exists(conn: Any, transaction_id: str) -> bool:
    """True when an open patron session exists for ``transaction_id``, read on ``conn`` (inside the
    caller's database transaction)."""
    c = t.patron_sessions.c
    return bool(conn.execute(select(exists().where(c.transaction_id == transaction_id, c.status == "open")))
                .scalar())
