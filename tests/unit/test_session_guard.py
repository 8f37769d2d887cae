"""The session guard: a first write made without reading the patron session is refused when one is open."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from worker.ledger import Ledger, TransactionRecord
from worker.ledger import tables as t
from worker.ledger.session_guard import SessionUnread
from worker.ledger.sessions import PatronSession, SessionStore


@pytest.fixture
def ledger_db(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as led:
        yield led


def _reserve(ledger: Ledger, txid: str) -> SessionStore:
    store = SessionStore(ledger.engine)
    store.reserve(PatronSession(transaction_id=txid, status="opening", patron_kind="existing", patron_id="p-1",
                                vip_card_number="7210695258", transaction_type="deposit", amount=Decimal("50.00")))
    return store


def _rows(ledger: Ledger, txid: str) -> tuple[int, int]:
    with ledger.engine.connect() as conn:
        tx = conn.execute(select(func.count()).select_from(t.transactions)
                          .where(t.transactions.c.transaction_id == txid)).scalar_one()
        ev = conn.execute(select(func.count()).select_from(t.events)
                          .where(t.events.c.transaction_id == txid)).scalar_one()
    return int(tx), int(ev)


def test_a_guarded_first_write_is_refused_when_a_session_is_open(ledger_db: Ledger) -> None:
    """An open session for the id: SessionUnread, and neither the row nor any event is written."""
    _reserve(ledger_db, "GUARD0000001").mark_open("GUARD0000001", "vip-1")
    with pytest.raises(SessionUnread, match="GUARD0000001"):
        ledger_db.write(None, TransactionRecord(transaction_id="GUARD0000001"), session_unread=True)
    assert _rows(ledger_db, "GUARD0000001") == (0, 0)


def test_a_guarded_first_write_goes_through_without_an_open_session(ledger_db: Ledger) -> None:
    """No session, or one still opening or refused (never open): the guarded write is written as usual."""
    ledger_db.write(None, TransactionRecord(transaction_id="GUARD0000002"), session_unread=True)
    _reserve(ledger_db, "GUARD0000003")  # still opening
    ledger_db.write(None, TransactionRecord(transaction_id="GUARD0000003"), session_unread=True)
    _reserve(ledger_db, "GUARD0000004").mark_refused("GUARD0000004", 409, {"message": "no"})
    ledger_db.write(None, TransactionRecord(transaction_id="GUARD0000004"), session_unread=True)
    for txid in ("GUARD0000002", "GUARD0000003", "GUARD0000004"):
        assert _rows(ledger_db, txid)[0] == 1, txid


def test_an_unguarded_first_write_ignores_the_session(ledger_db: Ledger) -> None:
    """Without the guard (the task read the session) an open session does not stop the write."""
    _reserve(ledger_db, "GUARD0000005").mark_open("GUARD0000005", "vip-5")
    ledger_db.write(None, TransactionRecord(transaction_id="GUARD0000005"))
    assert _rows(ledger_db, "GUARD0000005")[0] == 1
