"""Keeping the velocity tallies' ``approved`` and ``pending`` in step with the ledger.

The task marks its transaction on its last Redis round trip (:func:`marker`, with the notification it
parsed); a reviewer, expiry and VIP Connect's error notification mark it from the ledger's copy of the
notification (:func:`mark_from_ledger`). Velocity is a signal for the rules, not the record: a mark lost
in a crash is put right by the next one for that transaction (each is idempotent and names the status
outright), and the ledger stays the truth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import redis

from worker.ledger import Ledger, TransactionRecord
from worker.notification import Notification, decode_body, parse_notification
from worker.store.velocity import VelocityStore, mark_status

log = logging.getLogger("vipflow.velocity")


def marker(velocity: VelocityStore, note: Notification | None, received_at_s: float,
           before: str | None) -> Callable[[TransactionRecord | None], Callable[[Any], None] | None]:
    """For ``RecordWriter.finish(also=...)``: queue the mark of the task's final record when its status
    differs from the one it had before (``before``: the stored state at the start, None if new)."""
    def also(rec: TransactionRecord | None) -> Callable[[Any], None] | None:
        if rec is None or note is None or rec.decision is None:
            return None
        status = mark_status(str(rec.state))
        if status is None or (before is not None and mark_status(before) == status):
            return None
        card, kind, amount = note.vip_card_number, note.transaction_type, note.amount
        if not card or not kind or amount is None:
            return None
        return lambda pipe: velocity.queue_mark(pipe, str(kind), str(card), rec.transaction_id, amount,
                                                received_at_s, status)
    return also


def mark_from_ledger(velocity: VelocityStore, ledger: Ledger, rec: TransactionRecord) -> None:
    """Mark ``rec`` by its current state, reading its card and amount from the ledger's first valid
    notification of it. A Redis failure is logged, never raised: the state change it follows is
    already recorded in the ledger."""
    status = mark_status(str(rec.state))
    if status is None or rec.decision is None:
        return
    for n in ledger.notifications_of(rec.transaction_id):
        if n.status != "valid" or n.kind not in ("deposit", "withdraw"):
            continue
        note = parse_notification(decode_body(n.body), "withdraw" if n.kind == "withdraw" else "deposit")
        if not note.vip_card_number or note.amount is None:
            return
        try:
            velocity.mark(n.kind, str(note.vip_card_number), rec.transaction_id, Decimal(note.amount),
                          n.received_at / 1000, status)
        except redis.RedisError as exc:
            log.warning("velocity mark failed (%s); the ledger has the state", type(exc).__name__,
                        extra={"transaction_id": rec.transaction_id})
        return
