"""Patron sessions and API tokens in the ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from worker.ledger import Ledger, TransactionRecord
from worker.ledger.api_tokens import TokenRefused, TokenStore, digest
from worker.ledger.sessions import PatronSession, SessionStore, TransactionIdTaken


@pytest.fixture
def ledger_db(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as led:
        yield led


def session(txid: str = "TXSESSION0001") -> PatronSession:
    return PatronSession(transaction_id=txid, status="opening", patron_kind="existing", patron_id="p-1",
                         vip_card_number="7210695258", transaction_type="withdraw", amount=Decimal("120.50"),
                         wallet_balance=Decimal("1000.00"), return_url="https://site.example/back")


def test_a_reserved_session_opens_with_vips_session_id(ledger_db: Ledger) -> None:
    """reserve then mark_open keeps the session with VIP's id, its opening time and exact amounts."""
    store = SessionStore(ledger_db.engine)
    store.reserve(session())
    assert store.open_session("TXSESSION0001") is None  # reserved, not yet open
    opened = store.mark_open("TXSESSION0001", "vip-session-1")
    assert opened.status == "open" and opened.vip_session_id == "vip-session-1" and opened.opened_at is not None
    assert store.open_session("TXSESSION0001") == opened
    assert opened.amount == Decimal("120.50") and opened.wallet_balance == Decimal("1000.00")


def test_a_refused_session_is_never_open(ledger_db: Ledger) -> None:
    """mark_refused keeps VIP's status and error; the session is not open, and cannot be opened after."""
    store = SessionStore(ledger_db.engine)
    store.reserve(session())
    refused = store.mark_refused("TXSESSION0001", 400, {"errorCode": 99})
    assert refused.status == "refused" and refused.vip_error == {"errorCode": 99}
    assert store.mark_open("TXSESSION0001", "late").status == "refused"
    assert store.open_session("TXSESSION0001") is None


def test_a_transaction_id_is_used_once(ledger_db: Ledger) -> None:
    """A second session with the same id, or one with the id of a known transaction, is refused."""
    store = SessionStore(ledger_db.engine)
    store.reserve(session())
    with pytest.raises(TransactionIdTaken, match="session"):
        store.reserve(session())
    ledger_db.write(None, TransactionRecord(transaction_id="TXKNOWN000001"))
    with pytest.raises(TransactionIdTaken, match="transaction"):
        store.reserve(session("TXKNOWN000001"))


def test_a_token_is_stored_as_its_hash_only(ledger_db: Ledger) -> None:
    """create returns the token once; the ledger holds its sha256, never the token."""
    store = TokenStore(ledger_db.engine)
    token = store.create("site", ["status", "sessions"], "os:test")
    with ledger_db.engine.connect() as conn:
        stored = conn.execute(text("SELECT token_sha256, scopes FROM api_tokens")).one()
    assert stored.token_sha256 == digest(token) and token not in str(stored)
    assert stored.scopes == "sessions status"
    found = store.authenticate(token)
    assert found is not None and found.name == "site" and found.scopes == ("sessions", "status")
    assert store.authenticate(token + "x") is None and store.authenticate("nonsense") is None


def test_a_revoked_token_no_longer_authenticates(ledger_db: Ledger) -> None:
    """revoke makes the token unknown to authenticate; listing shows who revoked it."""
    store = TokenStore(ledger_db.engine)
    token = store.create("site", ["sessions"], "os:test")
    store.revoke("site", "os:ops")
    store.revoke("site", "os:later")  # a second revoke changes nothing
    assert store.authenticate(token) is None
    [listed] = store.listing()
    assert listed.revoked_by == "os:ops"
    with pytest.raises(TokenRefused, match="no token named"):
        store.revoke("nobody", "os:ops")


def test_bad_names_and_scopes_are_refused(ledger_db: Ledger) -> None:
    """An unknown scope, no scope, a bad name or a name in use is refused with a message saying so."""
    store = TokenStore(ledger_db.engine)
    with pytest.raises(TokenRefused, match="'admin' is not one of"):
        store.create("site", ["admin"], "os:test")
    with pytest.raises(TokenRefused, match="none"):
        store.create("site", [], "os:test")
    with pytest.raises(TokenRefused, match="token name"):
        store.create("a b", ["status"], "os:test")
    store.create("site", ["status"], "os:test")
    with pytest.raises(TokenRefused, match="exists already"):
        store.create("site", ["status"], "os:test")


def test_every_use_is_recorded_and_append_only(ledger_db: Ledger) -> None:
    """record_use keeps one row per use, counted by listing; the rows cannot be updated."""
    store = TokenStore(ledger_db.engine)
    store.create("site", ["status"], "os:test")
    store.record_use("site", "GET", "/api/v1/transactions/{transaction_id}", 200)
    store.record_use("site", "GET", "/api/v1/transactions/{transaction_id}", 404)
    [listed] = store.listing()
    assert listed.uses == 2 and listed.last_used_at is not None
    with pytest.raises(SQLAlchemyError), ledger_db.engine.begin() as conn:
        conn.execute(text("UPDATE api_token_uses SET status = 500"))
