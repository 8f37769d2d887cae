"""Recording outcome labels in the ledger: a batch is checked against the ledger and recorded whole, or
not at all, in one database transaction, with the actor who recorded it.

Checked against the ledger (each problem naming its row): the transaction exists; the label's date is
not before the day the transaction reached vipflow (a day's grace for the bank's time zone) nor after
tomorrow (UTC). A row that says what the ledger says already (the transaction's latest label is the
same label on the same date) is counted as already recorded and not written again, so importing the same
file twice, or retrying an API request, records each label once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from worker.labels.codes import kind_of
from worker.labels.parse import LabelRow, LabelsRefused, Problem, in_order, shown
from worker.ledger import tables as t
from worker.ledger.commit import unavailable

GRACE = timedelta(days=1)
_BATCH = 2000  # ids per lookup, rows per insert


@dataclass(frozen=True)
class ImportResult:
    """What one batch did: its ``label_imports`` row, the rows given, recorded, and already recorded."""

    import_id: int
    rows: int
    recorded: int
    already: int

    def to_dict(self) -> dict[str, int]:
        """JSON-ready form."""
        return {"import_id": self.import_id, "rows": self.rows, "recorded": self.recorded, "already": self.already}


@dataclass(frozen=True)
class StoredLabel:
    """One recorded label, with who recorded it and from what. Times epoch seconds."""

    transaction_id: str
    label: str
    kind: str
    occurred_on: date
    at: float
    actor: str
    source: str
    name: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the date as YYYY-MM-DD)."""
        return {"transaction_id": self.transaction_id, "label": self.label, "kind": self.kind,
                "occurred_on": self.occurred_on.isoformat(), "at": self.at, "actor": self.actor,
                "source": self.source, "name": self.name}


def _utc_day(epoch_s: float) -> date:
    return datetime.fromtimestamp(epoch_s, UTC).date()


class LabelStore:
    """Outcome labels on the ledger's engine. Database failures raise LedgerUnavailable."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def record(self, rows: Sequence[LabelRow], *, actor: str, source: str, sha256: str,
               name: str | None = None, today: date | None = None,
               problems: Sequence[Problem] = ()) -> ImportResult:
        """Record ``rows`` (checked by ``worker.labels.parse``) as one import by ``actor`` from ``source``
        (``csv``: ``name`` is the file's name; ``api``), all in one database transaction. ``problems``: those
        the parse found with the batch's other rows; ``rows`` are checked against the ledger all the same, so
        one pass names every bad row. LabelsRefused listing every problem sorted by line, the parse's and every
        row the ledger refuses (no such transaction, a date before it or in the future); then nothing is
        recorded."""
        today = today or datetime.now(UTC).date()
        try:
            with self.engine.begin() as conn:
                known = self._known(conn, [r.transaction_id for r in rows])
                refused = [p for r in rows if (p := self._check(r, known, today)) is not None]
                if problems or refused:
                    raise LabelsRefused(in_order([*problems, *refused]))
                fresh = [r for r in rows if known[r.transaction_id][1] != (r.label, r.occurred_on)]
                now = time.time()
                result = conn.execute(insert(t.label_imports).values(
                    at=now, actor=actor, source=source, name=name, sha256=sha256, rows=len(rows),
                    recorded=len(fresh)))
                import_id = int(result.inserted_primary_key[0])  # type: ignore[index]
                for start in range(0, len(fresh), _BATCH):  # a page of parameters at a time: bounded memory
                    conn.execute(insert(t.labels), [
                        {"import_id": import_id, "transaction_id": r.transaction_id, "label": r.label,
                         "kind": kind_of(r.label), "occurred_on": r.occurred_on, "line": r.line, "at": now}
                        for r in fresh[start:start + _BATCH]])
        except IntegrityError:  # a transaction pruned between the check and the insert
            raise LabelsRefused([Problem(name or source, "a transaction of the batch left the ledger while it was "
                                                         "being recorded; import it again")]) from None
        except SQLAlchemyError as exc:
            raise unavailable("record the labels", exc) from None
        return ImportResult(import_id, len(rows), len(fresh), len(rows) - len(fresh))

    @staticmethod
    def _check(row: LabelRow, known: dict[str, tuple[float, tuple[str, date] | None]], today: date) -> Problem | None:
        found = known.get(row.transaction_id)
        if found is None:
            return Problem(row.where, f"no transaction {shown(row.transaction_id)} in the ledger; label only "
                                      "transactions vipflow received (see `vipflow tx show ID`)")
        first_day = _utc_day(found[0])
        if row.occurred_on < first_day - GRACE:
            return Problem(row.where, f"date {row.occurred_on.isoformat()} is before the transaction reached "
                                      f"vipflow ({first_day.isoformat()})")
        if row.occurred_on > today + GRACE:
            return Problem(row.where, f"date {row.occurred_on.isoformat()} is in the future")
        return None

    @staticmethod
    def _known(conn: Connection, ids: Sequence[str]) -> dict[str, tuple[float, tuple[str, date] | None]]:
        """For each id the ledger has: (created_at, its latest label and date or None)."""
        tx, lb = t.transactions.c, t.labels.c
        out: dict[str, tuple[float, tuple[str, date] | None]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _BATCH):
            chunk = unique[start:start + _BATCH]
            latest = (select(lb.transaction_id, func.max(lb.id).label("last"))
                      .where(lb.transaction_id.in_(chunk)).group_by(lb.transaction_id).subquery())
            q = (select(tx.transaction_id, tx.created_at, t.labels.c.label, t.labels.c.occurred_on)
                 .select_from(t.transactions.outerjoin(latest, latest.c.transaction_id == tx.transaction_id)
                              .outerjoin(t.labels, t.labels.c.id == latest.c.last))
                 .where(tx.transaction_id.in_(chunk)))
            for txid, created_at, label, occurred_on in conn.execute(q):
                out[txid] = (float(created_at), (label, occurred_on) if label is not None else None)
        return out

    def of(self, transaction_id: str) -> list[StoredLabel]:
        """Every label recorded for one transaction, oldest first (the last is its label)."""
        lb, im = t.labels.c, t.label_imports.c
        q = (select(lb.transaction_id, lb.label, lb.kind, lb.occurred_on, lb.at, im.actor, im.source, im.name)
             .select_from(t.labels.join(t.label_imports, im.id == lb.import_id))
             .where(lb.transaction_id == transaction_id).order_by(lb.id))
        try:
            with self.engine.connect() as conn:
                return [StoredLabel(*row) for row in conn.execute(q)]
        except SQLAlchemyError as exc:
            raise unavailable("read the labels", exc) from None
