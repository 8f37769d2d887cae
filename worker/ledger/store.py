"""The ledger: read and append the system of record (see ``worker.ledger.tables``).

Every write of a transaction is one database transaction: the events that the
change adds (``worker.ledger.events.diff``), the new current row, and (when
given) the notification and its "done" mark. The current row's ``seq`` is a
fencing token: a write that does not start from the ``seq`` it read raises
``LockLost`` and changes nothing. Database failures raise ``LedgerUnavailable``
(a ``StoreError``: the task is retried, nothing is lost).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Engine, Row, and_, case, func, insert, literal, null, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from worker.ledger import commit
from worker.ledger import tables as t
from worker.ledger.commit import insert_ignore as _insert_ignore
from worker.ledger.commit import note_row as _note_row
from worker.ledger.events import Event, NewEvent, diff
from worker.ledger.patron_cards import CardSeen
from worker.ledger.record import TransactionRecord
from worker.ledger.states import FINAL, State, reachable
from worker.store.archive import ArchivedNotification
from worker.store.locks import LockLost

T = TypeVar("T")


@dataclass(frozen=True)
class Stored:
    """A record as the ledger holds it, with the ``seq`` a write must start from."""

    record: TransactionRecord
    seq: int


class Recorded(NamedTuple):
    """A notification with what its transaction's record says was decided (the backtest's read).

    ``repeat`` is True when an earlier decidable notification (not invalid, not an error
    notification) of the same transaction lies in the same time window. ``body`` is only read
    when the transaction has no recorded outcome (it is then decided on its notification alone).
    A named tuple rather than a frozen dataclass: a backtest builds a million, four times faster.
    """

    entry_id: str
    kind: str
    status: str
    transaction_id: str | None
    received_at: int  # epoch milliseconds
    transaction_type: str | None
    decision: dict[str, Any] | None
    facts: dict[str, Any] | None
    unasked: tuple[str, ...]
    body: bytes | None
    repeat: bool


@dataclass(frozen=True)
class DeadLetter:
    """One task that gave up: which notification, which transaction, why, after how many attempts; when
    ``replay --dlq`` last queued it again, and the state its transaction is in now (None: no record).

    A letter is open until its transaction is final (approved, rejected, failed, expired); one without a
    transaction id (its notification could not be read) until it was queued again; a changed body for a
    transaction that had already ended (``conflict_after_end``) until ``replay --dlq`` showed it to a
    person (``requeued_at`` then says when).
    """

    id: int
    entry_id: str
    transaction_id: str | None
    error: str
    reason: str
    attempts: int
    at: float
    requeued_at: float | None
    state: str | None = None


def _amount(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _note(row: Row[Any]) -> ArchivedNotification:
    m = row._mapping
    return ArchivedNotification(entry_id=m["entry_id"], kind=m["kind"], body=bytes(m["body"]),
                                received_at=int(m["received_at_ms"]), status=m["status"],
                                transaction_id=m["transaction_id"], body_sha256=m["body_sha256"],
                                error=m["error"], route=m["route"])


class Ledger:
    """The system of record on one SQLAlchemy engine (PostgreSQL, or SQLite embedded)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"
        # Reads and the one-statement writes need no BEGIN/COMMIT round trips on PostgreSQL.
        self._auto = engine.execution_options(isolation_level="AUTOCOMMIT") if self._pg else engine
        self._known_rulesets: set[str] = set()

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Ledger:
        """The ledger at ``url``, its schema checked (SQLite upgraded; PostgreSQL: SchemaOutdated if old).
        ``create=False`` for a command that only reads (or acts on what is there): a SQLite file that does
        not exist raises NoLedger (exit 2, naming the absolute path) and nothing is created."""
        from worker.ledger.schema import ensure_schema, make_engine

        engine = make_engine(url, create=create)
        try:
            ensure_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections and the hot path's own (``with Ledger.open(url) as ledger:`` does it
        on leaving)."""
        from worker.ledger import hotconn

        hotconn.close(self.engine)
        self.engine.dispose()

    def warm(self) -> int:
        """Open the hot path's PostgreSQL connections now (``hotconn.warm``), before a worker's first tasks;
        how many (0 on SQLite). Raises LedgerUnavailable when the database cannot be reached."""
        if not self._pg:
            return 0
        from worker.ledger import hotconn

        return self._run(lambda: hotconn.warm(self.engine), "open the ledger's connections")

    def _run(self, op: Callable[[], T], doing: str) -> T:
        try:
            return op()
        except LockLost:
            raise
        except SQLAlchemyError as exc:
            raise commit.unavailable(doing, exc) from None

    # --- notifications -------------------------------------------------------------------------

    def add_notification(self, note: ArchivedNotification) -> None:
        """Keep a notification as received (a second call for the same entry id changes nothing)."""
        def op() -> None:
            with self.engine.begin() as conn:
                _insert_ignore(conn, t.notifications, [_note_row(note)], "entry_id")
        self._run(op, "store the notification")

    def add_notifications(self, notes: Iterable[ArchivedNotification], done: Iterable[str] = ()) -> None:
        """Keep many notifications in one database transaction, and mark ``done`` entry ids finished."""
        rows = [_note_row(n) for n in notes]
        finished = [{"entry_id": e, "at": time.time()} for e in done]

        def op() -> None:
            with self.engine.begin() as conn:
                _insert_ignore(conn, t.notifications, rows, "entry_id")
                _insert_ignore(conn, t.notification_done, finished, "entry_id")
        self._run(op, "store notifications")

    def notification(self, entry_id: str) -> ArchivedNotification | None:
        """The notification with this entry id, or None."""
        def op() -> ArchivedNotification | None:
            with self._auto.connect() as conn:
                row = conn.execute(select(t.notifications).where(t.notifications.c.entry_id == entry_id)).first()
            return _note(row) if row is not None else None
        return self._run(op, "read a notification")

    def notifications_of(self, transaction_id: str) -> list[ArchivedNotification]:
        """Every notification of one transaction, oldest first."""
        def op() -> list[ArchivedNotification]:
            q = (select(t.notifications).where(t.notifications.c.transaction_id == transaction_id)
                 .order_by(t.notifications.c.received_at_ms, t.notifications.c.entry_id))
            with self._auto.connect() as conn:
                return [_note(r) for r in conn.execute(q)]
        return self._run(op, "read notifications")

    def iter_notifications(self, since_ms: int | None = None, until_ms: int | None = None,
                           batch: int = 2000) -> Iterator[ArchivedNotification]:
        """Notifications received in [since_ms, until_ms] (epoch ms), oldest first, ``batch`` rows at a time
        (keyset pagination: constant memory however many there are)."""
        c = t.notifications.c
        after: tuple[int, str] | None = None
        while True:
            q = select(t.notifications).order_by(c.received_at_ms, c.entry_id).limit(batch)
            conds = []
            if since_ms is not None:
                conds.append(c.received_at_ms >= since_ms)
            if until_ms is not None:
                conds.append(c.received_at_ms <= until_ms)
            if after is not None:
                ms, eid = after
                # ">= ms" on its own as well: PostgreSQL then starts the index scan there instead of
                # filtering every earlier row again on each page.
                conds.append(c.received_at_ms >= ms)
                conds.append((c.received_at_ms > ms) | and_(c.received_at_ms == ms, c.entry_id > eid))
            if conds:
                q = q.where(and_(*conds))

            def op(q: Any = q) -> list[ArchivedNotification]:
                with self._auto.connect() as conn:
                    return [_note(r) for r in conn.execute(q)]
            rows = self._run(op, "read notifications")
            yield from rows
            if len(rows) < batch:
                return
            after = (rows[-1].received_at, rows[-1].entry_id)

    def unprocessed(self, since_ms: int | None = None) -> list[ArchivedNotification]:
        """Valid and conflicting notifications whose task never finished, oldest first; with ``since_ms``
        (epoch ms), only those received since then (the receipt-time index bounds the scan)."""
        n, d = t.notifications, t.notification_done

        def op() -> list[ArchivedNotification]:
            q = (select(n).outerjoin(d, d.c.entry_id == n.c.entry_id)
                 .where(d.c.entry_id.is_(None), n.c.status != "invalid")
                 .order_by(n.c.received_at_ms, n.c.entry_id))
            if since_ms is not None:
                q = q.where(n.c.received_at_ms >= since_ms)
            with self._auto.connect() as conn:
                return [_note(r) for r in conn.execute(q)]
        return self._run(op, "read unfinished notifications")

    def unfinished_ids(self) -> list[tuple[str, int]]:
        """(entry id, receipt epoch ms) of the valid and conflicting notifications whose task never finished,
        oldest first: :meth:`unprocessed` without the bodies (``vipflow status`` counts them)."""
        n, d = t.notifications, t.notification_done

        def op() -> list[tuple[str, int]]:
            q = (select(n.c.entry_id, n.c.received_at_ms).outerjoin(d, d.c.entry_id == n.c.entry_id)
                 .where(d.c.entry_id.is_(None), n.c.status != "invalid")
                 .order_by(n.c.received_at_ms, n.c.entry_id))
            with self._auto.connect() as conn:
                return [(str(r.entry_id), int(r.received_at_ms)) for r in conn.execute(q)]
        return self._run(op, "read unfinished notifications")

    def count_notifications(self, since_ms: int | None = None, until_ms: int | None = None) -> int:
        """How many notifications were received in [since_ms, until_ms] (epoch ms; None: unbounded)."""
        c = t.notifications.c
        q = select(func.count()).select_from(t.notifications)
        if since_ms is not None:
            q = q.where(c.received_at_ms >= since_ms)
        if until_ms is not None:
            q = q.where(c.received_at_ms <= until_ms)

        def op() -> int:
            with self._auto.connect() as conn:
                return int(conn.execute(q).scalar_one())
        return self._run(op, "count notifications")

    def iter_recorded(self, since_ms: int | None = None, until_ms: int | None = None,
                      batch: int = 5000) -> Iterator[Recorded]:
        """Notifications received in [since_ms, until_ms] (epoch ms), oldest first, each with its
        transaction's recorded decision, facts and unasked sources (see :class:`Recorded`): one query
        per page of ``batch`` (keyset pagination, constant memory). On PostgreSQL each page is
        streamed, so the server produces the next rows while the caller works on this one."""
        n, tx = t.notifications, t.transactions
        earlier = n.alias("earlier")
        decidable = and_(earlier.c.status != "invalid", earlier.c.kind != "error")
        before = or_(earlier.c.received_at_ms < n.c.received_at_ms,
                     and_(earlier.c.received_at_ms == n.c.received_at_ms, earlier.c.entry_id < n.c.entry_id))
        repeat_q = select(literal(1)).select_from(earlier).where(
            earlier.c.transaction_id == n.c.transaction_id, decidable, before)
        if since_ms is not None:
            repeat_q = repeat_q.where(earlier.c.received_at_ms >= since_ms)
        # The JSON parts come as text and are parsed here: cheaper than the driver's JSONB loading,
        # and the same on both dialects.
        base = (select(n.c.entry_id, n.c.kind, n.c.status, n.c.transaction_id, n.c.received_at_ms,
                       tx.c.transaction_type, tx.c.record["decision"].as_string().label("decision"),
                       tx.c.record["facts"].as_string().label("facts"),
                       tx.c.record["unasked"].as_string().label("unasked"),
                       case((tx.c.outcome.is_(None), n.c.body), else_=null()).label("body"),
                       repeat_q.exists().label("repeat"))
                .select_from(n.outerjoin(tx, tx.c.transaction_id == n.c.transaction_id))
                .order_by(n.c.received_at_ms, n.c.entry_id).limit(batch))
        if since_ms is not None:
            base = base.where(n.c.received_at_ms >= since_ms)
        if until_ms is not None:
            base = base.where(n.c.received_at_ms <= until_ms)
        after: tuple[int, str] | None = None
        while True:
            q = base
            if after is not None:
                ms, eid = after  # ">= ms" first, so that an index on the receive time serves the range
                q = q.where(n.c.received_at_ms >= ms, or_(n.c.received_at_ms > ms, n.c.entry_id > eid))
            count = 0
            for entry_id, kind, status, txid, ms, ttype, decision, facts, unasked, body, repeat in self._stream(
                    q, "read notifications and their decisions"):
                count += 1
                after = (int(ms), entry_id)
                yield Recorded(entry_id, kind, status, txid, int(ms), ttype, _json(decision), _json(facts),
                               tuple(_json(unasked) or ()), bytes(body) if body is not None else None, bool(repeat))
            if count < batch:
                return

    def _stream(self, q: Any, doing: str) -> Iterator[Sequence[Any]]:
        """The rows of ``q`` as they arrive (PostgreSQL: psycopg's streaming, not one buffered result);
        LedgerUnavailable on a database failure."""
        try:
            with self._auto.connect() as conn:
                if self._pg:
                    compiled = q.compile(dialect=conn.dialect)
                    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                    try:
                        yield from cursor.stream(str(compiled), compiled.params)
                    finally:
                        cursor.close()
                else:
                    yield from conn.execute(q)
        except (SQLAlchemyError, self.engine.dialect.loaded_dbapi.Error) as exc:
            raise commit.unavailable(doing, exc) from None

    # --- transactions --------------------------------------------------------------------------

    def load(self, transaction_id: str) -> Stored | None:
        """The transaction as stored, or None when the ledger has no record of it."""
        def op() -> Stored | None:
            q = select(t.transactions.c.record, t.transactions.c.seq).where(
                t.transactions.c.transaction_id == transaction_id)
            with self._auto.connect() as conn:
                row = conn.execute(q).first()
            return None if row is None else Stored(TransactionRecord.from_dict(row.record), int(row.seq))
        return self._run(op, "read a transaction")

    def load_many(self, transaction_ids: Sequence[str], batch: int = 500) -> dict[str, Stored]:
        """The stored transactions among ``transaction_ids``, read ``batch`` at a time."""
        out: dict[str, Stored] = {}
        c = t.transactions.c
        for start in range(0, len(transaction_ids), batch):
            chunk = list(transaction_ids[start:start + batch])

            def op(chunk: list[str] = chunk) -> list[Any]:
                with self._auto.connect() as conn:
                    return list(conn.execute(select(c.transaction_id, c.record, c.seq)
                                             .where(c.transaction_id.in_(chunk))))
            for row in self._run(op, "read transactions"):
                out[row.transaction_id] = Stored(TransactionRecord.from_dict(row.record), int(row.seq))
        return out

    def write(self, prev: Stored | None, new: TransactionRecord, *, notification: ArchivedNotification | None = None,
              done_entry: str | None = None, extra: Sequence[NewEvent] = (), card: CardSeen | None = None,
              session_unread: bool = False) -> Stored:
        """Append the events that turn ``prev`` into ``new`` (plus ``extra``) and store ``new`` as the current
        row, in one database transaction; with ``notification`` kept, ``done_entry`` marked finished and the
        VIP card's patron ``card`` learned (``worker.ledger.patron_cards``).

        Raises LockLost when the transaction moved on since ``prev`` was read (another writer),
        IllegalTransition when ``prev``'s state cannot lead to ``new``'s, SessionUnread when ``prev`` is
        None, ``session_unread`` is true and an open patron session exists for the transaction
        (``worker.ledger.session_guard``), LedgerUnavailable on a database failure. Nothing is written in
        any of these cases.
        """
        old = prev.record if prev else None
        if old is not None and not reachable(old.state, new.state):
            from worker.ledger.states import IllegalTransition

            raise IllegalTransition(str(old.state), str(new.state), new.transaction_id)
        now = time.time()
        new_events = [*diff(old, new), *extra]
        seq0 = prev.seq if prev else 0
        if (prev is not None and not new_events and not done_entry and notification is None and card is None
                and old == new):
            return prev
        seq = seq0 + len(new_events)
        created_at = new.created_at or (old.created_at if old else 0) or now
        stored = replace(new, created_at=created_at, updated_at=now)
        txid, state = new.transaction_id, str(new.state)
        decision = new.decision or {}
        row = {
            "state": state, "transaction_type": new.transaction_type, "amount": _amount(new.amount),
            "outcome": decision.get("outcome"), "ruleset_hash": decision.get("content_hash"),
            "review_reason": new.review_reason if new.state == State.REVIEW else None,
            "deliveries": new.deliveries, "seq": seq, "updated_at": now,
        }
        events = [{"seq": seq0 + i, "at": e.at, "kind": e.kind, "name": e.name, "status": e.status,
                   "state": e.state or state,
                   "actor": e.actor, "data": e.data} for i, e in enumerate(new_events, 1)]
        write = commit.write_postgresql if self._pg else commit.write_generic
        write(self.engine, prev.seq if prev else None, prev.record.state if prev else None, txid, row, stored,
              events, notification, done_entry, now, card, session_unread)
        return Stored(stored, seq)

    def mark_done(self, entry_id: str) -> None:
        """Record that the task of notification ``entry_id`` finished (it must be in the ledger)."""
        def op() -> None:
            with self.engine.begin() as conn:
                _insert_ignore(conn, t.notification_done, [{"entry_id": entry_id, "at": time.time()}], "entry_id")
        self._run(op, "mark a notification done")

    def events(self, transaction_id: str) -> list[Event]:
        """The transaction's events, in order."""
        e = t.events.c

        def op() -> list[Event]:
            q = select(t.events).where(e.transaction_id == transaction_id).order_by(e.seq)
            with self._auto.connect() as conn:
                return [Event(r.transaction_id, r.seq, r.at, r.kind, r.name, r.status, r.state, r.actor, r.data)
                        for r in conn.execute(q)]
        return self._run(op, "read events")

    def in_state(self, state: State, *, limit: int = 1000, offset: int = 0) -> list[tuple[TransactionRecord, float]]:
        """Transactions in ``state``, with when they entered it when known (review: oldest first)."""
        c = t.transactions.c

        def op() -> list[tuple[TransactionRecord, float]]:
            q = (select(c.record, c.review_since, c.updated_at).where(c.state == str(state))
                 .order_by(c.review_since, c.updated_at, c.transaction_id).limit(limit).offset(offset))
            with self._auto.connect() as conn:
                return [(TransactionRecord.from_dict(r.record), float(r.review_since or r.updated_at))
                        for r in conn.execute(q)]
        return self._run(op, "read transactions by state")

    def older_in(self, states: Iterable[State], created_before: float, limit: int = 500) -> list[TransactionRecord]:
        """Up to ``limit`` transactions in one of ``states`` first seen before ``created_before`` (epoch
        seconds), oldest first: what expiry looks at."""
        c = t.transactions.c
        names = sorted(str(s) for s in states)

        def op() -> list[TransactionRecord]:
            q = (select(c.record).where(c.state.in_(names), c.created_at < created_before)
                 .order_by(c.created_at, c.transaction_id).limit(limit))
            with self._auto.connect() as conn:
                return [TransactionRecord.from_dict(r.record) for r in conn.execute(q)]
        return self._run(op, "read waiting transactions")

    def created_since(self, since: float, limit: int = 1000) -> list[TransactionRecord]:
        """Up to ``limit`` transactions created at or after ``since`` (epoch seconds), oldest first."""
        c = t.transactions.c

        def op() -> list[TransactionRecord]:
            q = (select(c.record).where(c.created_at >= since).order_by(c.created_at, c.transaction_id)
                 .limit(limit))
            with self._auto.connect() as conn:
                return [TransactionRecord.from_dict(r.record) for r in conn.execute(q)]
        return self._run(op, "read recent transactions")

    def review_stats(self, max_age_s: float, now: float | None = None) -> tuple[int, float, int]:
        """(how many wait for review, the oldest one's age in seconds, how many are older than ``max_age_s``)."""
        now = time.time() if now is None else now
        c = t.transactions.c

        def op() -> tuple[int, float, int]:
            with self._auto.connect() as conn:
                count, oldest = conn.execute(select(func.count(), func.min(c.review_since))
                                             .where(c.state == str(State.REVIEW))).one()
                overdue = conn.execute(select(func.count()).where(
                    c.state == str(State.REVIEW), c.review_since < now - max_age_s)).scalar_one()
            return int(count), max(0.0, now - float(oldest)) if oldest is not None else 0.0, int(overdue)
        return self._run(op, "count the review queue")

    # --- rule texts ----------------------------------------------------------------------------

    def remember_rulesets(self, rulesets: Iterable[Any]) -> None:
        """Keep the text of each ruleset (``rules.model.RuleSet``) once, by content hash (cached per process)."""
        rows = [{"content_hash": rs.content_hash, "name": rs.name, "version": rs.version, "file": rs.file,
                 "text": rs.text, "first_used_at": time.time()}
                for rs in rulesets if rs.content_hash not in self._known_rulesets]
        if not rows:
            return

        def op() -> None:
            with self.engine.begin() as conn:
                _insert_ignore(conn, t.rulesets, rows, "content_hash")
        self._run(op, "store the rule texts")
        self._known_rulesets.update(r["content_hash"] for r in rows)

    def ruleset(self, content_hash: str) -> dict[str, Any] | None:
        """{content_hash, name, version, file, text, first_used_at} of one ruleset version, or None."""
        def op() -> dict[str, Any] | None:
            with self._auto.connect() as conn:
                row = conn.execute(select(t.rulesets).where(t.rulesets.c.content_hash == content_hash)).first()
            return dict(row._mapping) if row is not None else None
        return self._run(op, "read a rule text")

    # --- dead letters --------------------------------------------------------------------------

    def add_dead_letter(self, entry_id: str, transaction_id: str | None, error: str, reason: str,
                        attempts: int) -> None:
        """Keep one dead letter (``error`` free of personal data)."""
        def op() -> None:
            with self.engine.begin() as conn:
                conn.execute(insert(t.dead_letters).values(
                    entry_id=entry_id, transaction_id=transaction_id, error=error, reason=reason,
                    attempts=attempts, at=time.time()))
        self._run(op, "store a dead letter")

    def _open_letter(self) -> Any:
        """The condition of an open dead letter (see :class:`DeadLetter`), on ``dead_letters`` joined to
        ``transactions``."""
        c, tx = t.dead_letters.c, t.transactions.c
        # A changed body for an ended transaction: open until a person was shown it (replay --dlq).
        conflict = c.reason == "conflict_after_end"
        return or_(and_(or_(c.transaction_id.is_(None), conflict), c.requeued_at.is_(None)),
                   and_(c.transaction_id.is_not(None), ~conflict,
                        or_(tx.state.is_(None), tx.state.not_in([str(s) for s in FINAL]))))

    def _letters_from(self) -> Any:
        c, tx = t.dead_letters.c, t.transactions.c
        return t.dead_letters.outerjoin(t.transactions, tx.transaction_id == c.transaction_id)

    def dead_letters(self, *, include_closed: bool = False) -> list[DeadLetter]:
        """Dead letters, oldest first, with their transactions' states: the open ones (their transaction
        not final yet), or every one with ``include_closed``."""
        c = t.dead_letters.c

        def op() -> list[DeadLetter]:
            q = select(t.dead_letters, t.transactions.c.state).select_from(self._letters_from()).order_by(c.id)
            if not include_closed:
                q = q.where(self._open_letter())
            with self._auto.connect() as conn:
                return [DeadLetter(r.id, r.entry_id, r.transaction_id, r.error, r.reason, r.attempts, r.at,
                                   r.requeued_at, r.state) for r in conn.execute(q)]
        return self._run(op, "read dead letters")

    def dead_letter_count(self) -> int:
        """How many dead letters are open (their transaction not final yet)."""
        def op() -> int:
            with self._auto.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(self._letters_from())
                                        .where(self._open_letter())).scalar_one())
        return self._run(op, "count dead letters")

    def mark_requeued(self, entry_id: str) -> int:
        """Record that the dead letters of ``entry_id`` were queued again now (they stay open until their
        transaction is final); how many."""
        def op() -> int:
            with self.engine.begin() as conn:
                done = conn.execute(update(t.dead_letters).where(t.dead_letters.c.entry_id == entry_id)
                                    .values(requeued_at=time.time()))
                return int(done.rowcount)
        return self._run(op, "mark dead letters re-queued")

