"""Replay: select notifications from the ledger and put them through the normal task again.

Selection is by receive time, by transaction id, from the ledger's dead letters,
or the unfinished ones (the ledger's notifications whose task never finished,
plus entries still only in the Redis intake buffer's pending set). Re-queueing
goes through the same ``Publisher`` as the ingestor (the worker reads the entry
from the buffer, else from the ledger); the pipeline leaves a transaction that
is already decided and acted on as it is, so a replay can never approve twice.

``force`` re-decides transactions that were never decided or whose processing
failed, and never touches one whose approval started. It erases nothing: under
the transaction's lock it records a ``redecide`` step (a ``replay`` event with
the operator's identity) and moves the transaction back to ``received``; the
earlier decision stays in the ledger's events. Re-queueing dead letters, letter
by letter, lives in ``worker.replay_dlq``; the dry-run backtest in ``worker.backtest``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.errors import InputError
from worker.ledger import Ledger, RecordWriter, State, TransactionRecord
from worker.ledger.states import allowed, is_settled
from worker.store import keys
from worker.store.archive import Archive, ArchivedNotification
from worker.store.locks import Locks
from worker.store.publisher import Publisher

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Progress = Callable[[int, int], None]
StopFlag = Callable[[], bool]
PAGE = 500  # transactions read per ledger query while re-queueing
# A review the rules asked for, or a conflict a person must settle, is a decision acted on, not a failure.
_DECIDED_REVIEW = ("the rules said review", "conflicting body")


class SelectionError(InputError):
    """A replay selection that cannot be used; ``option`` names the command-line option."""

    def __init__(self, option: str, problem: str):
        self.option = option
        super().__init__(f"{option}: {problem}")


@dataclass(frozen=True)
class Selection:
    """What to replay: one source (ids, dead letters, unfinished, else the time range) and a time window."""

    since_ms: int | None = None
    until_ms: int | None = None
    ids: tuple[str, ...] = ()
    dlq: bool = False
    unprocessed: bool = False

    @property
    def by_time(self) -> bool:
        """True when the time window alone selects (the ledger is then streamed)."""
        return not (self.ids or self.dlq or self.unprocessed)


@dataclass(frozen=True)
class Ref:
    """A selected notification without its body (a selection of 100,000 stays small)."""

    entry_id: str
    kind: str
    status: str
    transaction_id: str | None
    received_at: int


@dataclass
class Selected:
    """The selected notifications, oldest first (a time range is streamed from the ledger, page by page),
    how many there are, and the dead letters' entry ids that neither the ledger nor the buffer holds."""

    refs: Iterable[Ref]
    total: int
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Stores:
    """What replay reads and writes: the Redis intake buffer and locks, and the ledger."""

    client: Any
    prefix: str
    archive: Archive
    ledger: Ledger
    locks: Locks


def stores(client: Any, prefix: str, ledger: Ledger, lock_ttl_s: float = 120.0) -> Stores:
    """Replay's stores on one Redis client and key prefix, and the ledger."""
    return Stores(client, prefix, Archive(client, prefix), ledger, Locks(client, prefix, lock_ttl_s))


def parse_time(text: str, option: str) -> int:
    """An ISO 8601 time (a date alone is midnight; no offset means UTC) as epoch ms; SelectionError if not."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SelectionError(option, f"{text!r} is not an ISO time; use e.g. 2024-05-01T12:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // timedelta(milliseconds=1)  # exact: no float rounding at the boundary


def make_selection(*, since: str | None = None, until: str | None = None, ids: Iterable[str] = (),
                   dlq: bool = False, unprocessed: bool = False, everything: bool = False) -> Selection:
    """Check and build a selection; SelectionError naming the option at fault. Nothing selected means
    every notification in the ledger when ``everything`` (a backtest, which changes nothing), else it is
    refused (a re-queue of the whole ledger is never what a missing option meant)."""
    since_ms = parse_time(since, "--since") if since else None
    until_ms = parse_time(until, "--until") if until else None
    if since_ms is not None and until_ms is not None and until_ms < since_ms:
        raise SelectionError("--until", f"{until} is before --since {since}")
    wanted = tuple(dict.fromkeys(i.strip() for i in ids))
    if any(not i for i in wanted):
        raise SelectionError("--id", "an empty transaction id")
    if sum((bool(wanted), dlq, unprocessed)) > 1:
        raise SelectionError("--id/--dlq/--unprocessed", "choose one of them (--since/--until may narrow it)")
    if not (everything or wanted or dlq or unprocessed or since_ms is not None or until_ms is not None):
        raise SelectionError("selection", "say what to replay: --since/--until, --id, --dlq or --unprocessed")
    return Selection(since_ms, until_ms, wanted, dlq, unprocessed)


def _ref(entry: ArchivedNotification) -> Ref:
    return Ref(entry.entry_id, entry.kind, entry.status, entry.transaction_id, entry.received_at)


def _order(ref: Ref) -> tuple[int, tuple[int, ...], str]:
    # Stream ids are "ms-seq": compared as numbers, not as text ("5-10" after "5-9").
    head, _, tail = ref.entry_id.partition("-")
    parts = (int(head), int(tail)) if head.isdigit() and tail.isdigit() else ()
    return ref.received_at, parts, ref.entry_id


def _stored(st: Stores, entry_id: str) -> ArchivedNotification | None:
    """The notification from the intake buffer, else the ledger (as the worker reads it)."""
    return st.archive.get(entry_id) or st.ledger.notification(entry_id)


def _streamed(st: Stores, since_ms: int | None, until_ms: int | None) -> Iterator[Ref]:
    for entry in st.ledger.iter_notifications(since_ms, until_ms):
        yield _ref(entry)


def select(sel: Selection, st: Stores) -> Selected:
    """The selected notifications; SelectionError when ``--id`` names a transaction with none."""
    missing: list[str] = []
    if sel.by_time:
        total = st.ledger.count_notifications(sel.since_ms, sel.until_ms)
        return Selected(_streamed(st, sel.since_ms, sel.until_ms), total)
    entries: list[ArchivedNotification] = []
    if sel.ids:
        for txid in sel.ids:
            found = [*st.ledger.notifications_of(txid), *st.archive.by_transaction(txid)]
            if not found:
                raise SelectionError("--id", f"no notification recorded for transaction {txid}")
            entries += found
    elif sel.dlq:
        for entry_id in dict.fromkeys(letter.entry_id for letter in st.ledger.dead_letters()):
            entry = _stored(st, entry_id)
            if entry is None:
                missing.append(entry_id)
            else:
                entries.append(entry)
    else:
        entries = st.ledger.unprocessed()
        known = {e.entry_id for e in entries}
        for entry_id in st.archive.pending_ids() - known:  # not drained yet, or pending again after --force
            entry = _stored(st, entry_id)
            if entry is not None:
                entries.append(entry)
    lo = sel.since_ms if sel.since_ms is not None else -1
    hi = sel.until_ms if sel.until_ms is not None else 2**63
    unique = {e.entry_id: _ref(e) for e in entries if lo <= e.received_at <= hi}
    refs = sorted(unique.values(), key=_order)
    return Selected(refs, len(refs), missing)


def force_eligible(rec: TransactionRecord | None) -> bool:
    """True when ``--force`` may re-decide: never decided, or its processing failed; never once approving."""
    if rec is None or rec.last_action("approve") is not None:
        return False  # nothing to clear, or an approval started: only reconciliation may follow
    if not allowed(rec.state, State.RECEIVED):
        return False  # final, or in flight (a plain replay carries it on): the state machine says which
    if rec.state == State.REVIEW:
        return not (rec.review_reason or "").startswith(_DECIDED_REVIEW)
    return rec.decision is None


@dataclass
class RequeueReport:
    """What a re-queue did."""

    selected: int = 0
    queued: int = 0
    skipped_invalid: int = 0
    already_final: int = 0  # queued anyway: the worker leaves them as they are
    redecided: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    interrupted: bool = False


def redecide(st: Stores, txid: str, entry_ids: list[str], actor: str) -> bool:
    """Under the transaction's lock, record a ``redecide`` step and move an eligible transaction back to
    ``received`` (decision, facts and review reason cleared; the earlier events stay); False when it is
    not eligible (any more). Raises LockBusy when a worker keeps the lock for 10 s."""
    lock = st.locks.lock(txid)
    lock.acquire(wait_s=10)
    try:
        stored = st.ledger.load(txid)
        if stored is None or not force_eligible(stored.record):
            return False
        rec = stored.record
        rec = rec.with_action("redecide", "done", {
            "by": "replay --force", "actor": actor, "state": str(rec.state),
            "outcome": (rec.decision or {}).get("outcome")})
        rec = replace(rec, decision=None, facts=None, shadow_decision=None, unasked=(), review_reason=None,
                      deliveries=0).moved(State.RECEIVED)
        RecordWriter(st.ledger, lock, stored)(rec)
        st.locks.restart_deliveries(txid)  # the worker's delivery limit counts from here
        # Pending again before it is queued: if queueing fails now, --unprocessed still finds it.
        st.client.sadd(keys.pending(st.prefix), *entry_ids)
        return True
    finally:
        lock.release()


def _pages(refs: Iterable[Ref], size: int) -> Iterator[list[Ref]]:
    page: list[Ref] = []
    for ref in refs:
        page.append(ref)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def requeue(selected: Selected, st: Stores, publisher: Publisher, *, force: bool = False,
            actor: str | None = None, on_progress: Progress | None = None,
            should_stop: StopFlag | None = None) -> RequeueReport:
    """Queue the task for each selected notification (invalid ones are skipped), a page at a time;
    ``force`` needs ``actor`` (who asked, as ``worker.ledger.actor.cli_actor`` says). See the module
    docstring."""
    if force and not actor:
        raise ValueError("replay --force records who asked: pass actor (worker.ledger.actor.cli_actor)")
    report = RequeueReport(selected=selected.total, missing=list(selected.missing))
    done = 0
    redecided: set[str] = set()
    for page in _pages(selected.refs, PAGE):
        live = [r for r in page if r.status != "invalid" and r.transaction_id]
        report.skipped_invalid += len(page) - len(live)
        done += len(page) - len(live)
        txids = list(dict.fromkeys(str(r.transaction_id) for r in live))
        recs = {t: s.record for t, s in st.ledger.load_many(txids).items()}
        if force:
            by_tx: dict[str, list[str]] = {}
            for r in live:
                by_tx.setdefault(str(r.transaction_id), []).append(r.entry_id)
            for txid in txids:
                if txid not in redecided and force_eligible(recs.get(txid)) \
                        and redecide(st, txid, by_tx[txid], str(actor)):
                    redecided.add(txid)
                    report.redecided.append(txid)
        for ref in live:
            if should_stop is not None and should_stop():
                report.interrupted = True
                return report
            publisher.publish(ref.entry_id)
            report.queued += 1
            done += 1
            rec = recs.get(str(ref.transaction_id))
            if rec is not None and is_settled(rec.state) and str(ref.transaction_id) not in redecided:
                report.already_final += 1
            if on_progress is not None:
                on_progress(done, max(done, report.selected))
    report.selected = max(done, report.selected)  # a stream may have grown while it was read
    return report
