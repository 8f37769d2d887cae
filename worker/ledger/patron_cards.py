"""Which patron a VIP card number belongs to, learned from the notifications that carry both.

VIP Connect's documented withdrawal notification names the VIP card but not the patron; its deposit
notification names both. Every valid notification that carries both teaches the ledger the card's
patron, with the transaction's first ledger write (no round trip of its own: on PostgreSQL it is one
more clause of the write's single statement, see ``worker.ledger.pgwrite``). A card whose patron
changes is relearned from the newest notification (by receipt time); an unchanged one is not written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from worker.ledger import tables as t


@dataclass(frozen=True)
class CardSeen:
    """A notification (``entry_id``, received at ``received_at_ms`` epoch ms) naming both a VIP card and
    its patron."""

    vip_card_number: str
    patron_id: str
    entry_id: str
    received_at_ms: int

    def params(self) -> dict[str, Any]:
        """The bound parameters of the PostgreSQL write's ``patron_cards`` clause."""
        return {"c_card": self.vip_card_number, "c_patron": self.patron_id, "c_entry": self.entry_id,
                "c_received": self.received_at_ms}


def learn(conn: Any, seen: CardSeen, now: float) -> None:
    """Upsert ``seen`` on an open SQLAlchemy connection (SQLite or PostgreSQL): insert the card, or change
    its patron when ``seen`` is newer and names another one."""
    row = {"vip_card_number": seen.vip_card_number, "patron_id": seen.patron_id, "entry_id": seen.entry_id,
           "received_at_ms": seen.received_at_ms, "learned_at": now}
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(t.patron_cards).values(**row)
    c = t.patron_cards.c
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[c.vip_card_number],
        set_={"patron_id": stmt.excluded.patron_id, "entry_id": stmt.excluded.entry_id,
              "received_at_ms": stmt.excluded.received_at_ms, "learned_at": stmt.excluded.learned_at},
        where=(c.patron_id != stmt.excluded.patron_id) & (c.received_at_ms <= stmt.excluded.received_at_ms)))


_PATRON_OF = "SELECT patron_id FROM patron_cards WHERE vip_card_number = %s"


class PatronCards:
    """The learned cards on the ledger's engine. Database failures raise LedgerUnavailable."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # Reads stand alone: one round trip each on PostgreSQL (no BEGIN/ROLLBACK around them).
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT") \
            if engine.dialect.name == "postgresql" else engine

    def patron_of(self, vip_card_number: str) -> str | None:
        """The patron id last learned for ``vip_card_number``, or None when no notification taught it (on
        PostgreSQL one prepared statement on the thread's own connection: a withdrawal without PatronId
        asks on the hot path)."""
        c = t.patron_cards.c
        if self.engine.dialect.name == "postgresql":
            from worker.ledger.commit import fetch_one_postgresql  # commit imports this module

            row = fetch_one_postgresql(self.engine, _PATRON_OF, (vip_card_number,), "read a VIP card's patron")
            return None if row is None or row["patron_id"] is None else str(row["patron_id"])
        try:
            with self._reads.connect() as conn:
                found = conn.execute(select(c.patron_id).where(c.vip_card_number == vip_card_number)).scalar()
        except SQLAlchemyError as exc:
            from worker.ledger.commit import unavailable

            raise unavailable("read a VIP card's patron", exc) from None
        return None if found is None else str(found)
