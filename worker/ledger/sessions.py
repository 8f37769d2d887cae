"""Patron sessions in the ledger: reserved before VIP is asked, then open or refused.

A transaction id is reserved by inserting its row (status ``opening``): the primary key
makes two requests for the same id race to one winner, and an id the ledger already
knows as a transaction is refused too. VIP's answer then marks the row ``open`` (with
VIP's session id) or ``refused`` (with VIP's status and error body): a refused session
is never open. The worker reads open sessions to check notifications against them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Engine, exists, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from worker.errors import LedgerError
from worker.ledger import tables as t
from worker.ledger.commit import fetch_one_postgresql, unavailable

SessionStatus = Literal["opening", "open", "refused"]
PatronKind = Literal["existing", "new"]


class TransactionIdTaken(LedgerError):
    """The transaction id is already used by a session or a transaction."""


@dataclass(frozen=True)
class PatronSession:
    """One session as the ledger holds it. Amounts in dollars (Decimal); times epoch seconds."""

    transaction_id: str
    status: SessionStatus
    patron_kind: PatronKind
    patron_id: str
    vip_card_number: str | None
    transaction_type: str  # deposit | withdraw
    amount: Decimal
    wallet_balance: Decimal | None = None
    remaining_daily_deposit: Decimal | None = None
    product_type: str | None = None
    return_url: str | None = None
    vip_session_id: str | None = None
    vip_status: int | None = None
    vip_error: Any = None
    token_name: str | None = None
    created_at: float = 0.0
    opened_at: float | None = None

    def age_s(self, at: float) -> int | None:
        """Whole seconds from the session's opening to ``at`` (epoch seconds); None if never opened."""
        return None if self.opened_at is None else max(0, int(at - self.opened_at))


_COLUMNS = tuple(PatronSession.__dataclass_fields__)
_GET = f"SELECT {', '.join(_COLUMNS)} FROM patron_sessions WHERE transaction_id = %s"  # noqa: S608 - constant


def _from_row(row: Any) -> PatronSession:
    return PatronSession(**{name: row._mapping[name] for name in _COLUMNS})


class SessionStore:
    """Patron sessions on the ledger's engine. Database failures raise LedgerUnavailable."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # Reads stand alone: one round trip each on PostgreSQL (no BEGIN/ROLLBACK around them).
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT") \
            if engine.dialect.name == "postgresql" else engine

    def reserve(self, session: PatronSession) -> None:
        """Insert ``session`` as ``opening``; TransactionIdTaken when its id is used already."""
        txid = session.transaction_id
        row = {name: getattr(session, name) for name in _COLUMNS}
        row.update(status="opening", created_at=time.time(), opened_at=None, vip_session_id=None)
        try:
            with self.engine.begin() as conn:
                known = conn.execute(select(exists().where(t.transactions.c.transaction_id == txid))).scalar()
                if known:
                    raise TransactionIdTaken(f"transaction id {txid} is already used by a transaction")
                conn.execute(insert(t.patron_sessions).values(**row))
        except IntegrityError:
            raise TransactionIdTaken(f"transaction id {txid} is already used by a session") from None
        except SQLAlchemyError as exc:
            raise unavailable("reserve the session's transaction id", exc) from None

    def mark_open(self, transaction_id: str, vip_session_id: str) -> PatronSession:
        """VIP opened it: record VIP's session id and the time; the session as stored."""
        return self._finish(transaction_id, status="open", vip_session_id=vip_session_id, opened_at=time.time())

    def mark_refused(self, transaction_id: str, vip_status: int | None, vip_error: Any) -> PatronSession:
        """VIP refused it (or could not be asked): never open; VIP's answer kept."""
        return self._finish(transaction_id, status="refused", vip_status=vip_status, vip_error=vip_error)

    def _finish(self, transaction_id: str, **values: Any) -> PatronSession:
        c = t.patron_sessions.c
        try:
            with self.engine.begin() as conn:
                conn.execute(update(t.patron_sessions)
                             .where(c.transaction_id == transaction_id, c.status == "opening").values(**values))
                row = conn.execute(select(t.patron_sessions).where(c.transaction_id == transaction_id)).one()
        except SQLAlchemyError as exc:
            raise unavailable("record VIP's answer to the session", exc) from None
        return _from_row(row)

    def get(self, transaction_id: str) -> PatronSession | None:
        """The session of ``transaction_id`` whatever its status, or None (read on every notification:
        on PostgreSQL one prepared statement on the driver's connection)."""
        if self.engine.dialect.name == "postgresql":
            found = fetch_one_postgresql(self.engine, _GET, (transaction_id,), "read a patron session")
            return None if found is None else PatronSession(**{name: found[name] for name in _COLUMNS})
        try:
            with self._reads.connect() as conn:
                row = conn.execute(select(t.patron_sessions)
                                   .where(t.patron_sessions.c.transaction_id == transaction_id)).first()
        except SQLAlchemyError as exc:
            raise unavailable("read a patron session", exc) from None
        return None if row is None else _from_row(row)

    def open_session(self, transaction_id: str) -> PatronSession | None:
        """The session of ``transaction_id`` if VIP opened it, else None (refused or still opening)."""
        found = self.get(transaction_id)
        return found if found is not None and found.status == "open" else None

    def count(self) -> dict[str, int]:
        """How many sessions there are per status."""
        from sqlalchemy import func

        c = t.patron_sessions.c
        try:
            with self.engine.connect() as conn:
                return {s: int(n) for s, n in conn.execute(select(c.status, func.count()).group_by(c.status))}
        except SQLAlchemyError as exc:
            raise unavailable("count patron sessions", exc) from None
