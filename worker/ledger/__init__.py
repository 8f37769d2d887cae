"""The ledger: vipflow's system of record in SQL (PostgreSQL in production, SQLite embedded).

Public surface: :class:`Ledger` (read and append), :class:`RecordWriter` (how a
locked transaction is written), :class:`TransactionRecord`, the state machine
(:mod:`worker.ledger.states`) and the schema tools (:mod:`worker.ledger.schema`).
"""

from __future__ import annotations

from worker.ledger.record import ActionEntry, NotificationSeen, TransactionRecord
from worker.ledger.states import FINAL, SETTLED, IllegalTransition, State
from worker.ledger.store import DeadLetter, Ledger, Stored
from worker.ledger.writer import RecordWriter

__all__ = ["FINAL", "SETTLED", "ActionEntry", "DeadLetter", "IllegalTransition", "Ledger", "NotificationSeen",
           "RecordWriter", "State", "Stored", "TransactionRecord"]
