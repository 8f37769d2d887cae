"""Replay: select archived notifications and put them through the normal task again.

Selection is by receive time, by transaction id, from the dead-letter list or
from the archive's pending set (archived, never decided). Re-queueing goes
through the same ``Publisher`` as the ingestor; the pipeline itself leaves a
transaction that is already decided and acted on as it is, so a replay can
never approve twice. ``force`` first clears the decision of transactions that
were never decided or whose processing failed, and never touches one whose
approval started. The dry-run backtest lives in ``worker.backtest``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rules.errors import VipflowError
from worker.errors import StoreError
from worker.store.archive import Archive, ArchivedNotification, pending_key
from worker.store.deadletters import DeadLetters
from worker.store.publisher import Publisher
from worker.store.records import RecordStore, TransactionRecord
from worker.store.review import ReviewQueue

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Progress = Callable[[int, int], None]
StopFlag = Callable[[], bool]
# A review the rules asked for, or a conflict a person must settle, is a decision acted on, not a failure.
_DECIDED_REVIEW = ("the rules said review", "conflicting body")


class SelectionError(VipflowError):
    """A replay selection that cannot be used; ``option`` names the command-line option."""

    def __init__(self, option: str, problem: str):
        self.option = option
        super().__init__(f"{option}: {problem}")


@dataclass(frozen=True)
class Selection:
    """What to replay: one source (ids, dead letters, pending, else the time range) and a time window."""

    since_ms: int | None = None
    until_ms: int | None = None
    ids: tuple[str, ...] = ()
    dlq: bool = False
    unprocessed: bool = False


@dataclass(frozen=True)
class Ref:
    """An archived notification without its body (a selection of 100,000 stays small)."""

    entry_id: str
    kind: str
    status: str
    transaction_id: str | None
    received_at: int


@dataclass(frozen=True)
class Stores:
    """The Redis parts replay reads and writes."""

    client: Any
    prefix: str
    archive: Archive
    records: RecordStore
    reviews: ReviewQueue
    deadletters: DeadLetters


def stores(client: Any, prefix: str, lock_ttl_s: float = 120.0) -> Stores:
    """Replay's stores on one Redis client and key prefix."""
    return Stores(client, prefix, Archive(client, prefix), RecordStore(client, prefix, lock_ttl_s),
                  ReviewQueue(client, prefix), DeadLetters(client, prefix))


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
                   dlq: bool = False, unprocessed: bool = False) -> Selection:
    """Check and build a selection; SelectionError naming the option at fault."""
    since_ms = parse_time(since, "--since") if since else None
    until_ms = parse_time(until, "--until") if until else None
    if since_ms is not None and until_ms is not None and until_ms < since_ms:
        raise SelectionError("--until", f"{until} is before --since {since}")
    wanted = tuple(dict.fromkeys(i.strip() for i in ids))
    if any(not i for i in wanted):
        raise SelectionError("--id", "an empty transaction id")
    if sum((bool(wanted), dlq, unprocessed)) > 1:
        raise SelectionError("--id/--dlq/--unprocessed", "choose one of them (--since/--until may narrow it)")
    if not (wanted or dlq or unprocessed or since_ms is not None or until_ms is not None):
        raise SelectionError("selection", "say what to replay: --since/--until, --id, --dlq or --unprocessed")
    return Selection(since_ms, until_ms, wanted, dlq, unprocessed)


def _ref(entry: ArchivedNotification) -> Ref:
    return Ref(entry.entry_id, entry.kind, entry.status, entry.transaction_id, entry.received_at)


def _order(entry_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in entry_id.split("-"))


def select(sel: Selection, st: Stores) -> tuple[list[Ref], list[str]]:
    """The selected archive entries, oldest first, and the entry ids named but no longer archived."""
    missing: list[str] = []
    if sel.ids:
        entries: list[ArchivedNotification] = []
        for txid in sel.ids:
            found = st.archive.by_transaction(txid)
            if not found:
                raise SelectionError("--id", f"no archived notification for transaction {txid}")
            entries += found
    elif sel.dlq:
        entries = []
        for letter in st.deadletters.list():
            entry = st.archive.get(letter.entry_id)
            if entry is None:
                missing.append(letter.entry_id)
            else:
                entries.append(entry)
    elif sel.unprocessed:
        entries = st.archive.unprocessed()
    else:
        refs = [_ref(e) for e in st.archive.iter_range(sel.since_ms, sel.until_ms)]
        return refs, missing
    lo = sel.since_ms if sel.since_ms is not None else -1
    hi = sel.until_ms if sel.until_ms is not None else 2**63
    unique = {e.entry_id: _ref(e) for e in entries if lo <= e.received_at <= hi}
    return sorted(unique.values(), key=lambda r: _order(r.entry_id)), missing


def force_eligible(rec: TransactionRecord | None) -> bool:
    """True when ``--force`` may re-decide: never decided, or its processing failed; never once approving."""
    if rec is None or rec.last_action("approve") is not None:
        return False  # nothing to clear, or an approval started: only reconciliation may follow
    if rec.state in ("approved", "rejected", "failed"):
        return False
    if rec.state == "review":
        return not (rec.review_reason or "").startswith(_DECIDED_REVIEW)
    return rec.decision is None  # decided or frozen: in flight, a plain replay carries it on


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


def load_many(st: Stores, txids: list[str], batch: int = 500) -> dict[str, TransactionRecord]:
    """The records of ``txids`` that exist, read ``batch`` at a time with MGET."""
    found: dict[str, TransactionRecord] = {}
    for start in range(0, len(txids), batch):
        chunk = txids[start:start + batch]
        for txid, raw in zip(chunk, st.client.mget([st.records.record_key(t) for t in chunk]), strict=True):
            if raw is not None:
                found[txid] = parse_record(txid, raw)
    return found


def parse_record(txid: str, raw: bytes | str) -> TransactionRecord:
    """A stored record; StoreError when the value is not one."""
    try:
        return TransactionRecord.from_dict(json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise StoreError(f"the record of transaction {txid} is not a transaction record "
                         f"({type(exc).__name__}); inspect it with vipflow tx show") from None


def _reset(st: Stores, txid: str, entry_ids: list[str]) -> bool:
    """Clear a failed or undecided transaction's decision under its lock; False when no longer eligible."""
    lock = st.records.lock(txid)
    lock.acquire(wait_s=10)
    try:
        rec = st.records.load(txid)
        if not force_eligible(rec) or rec is None:
            return False
        was = (rec.decision or {}).get("outcome")
        rec = rec.with_action("redecide", "done", {"by": "replay --force", "state": rec.state,
                                                   "outcome": was})
        st.records.save(replace(rec, decision=None, facts=None, state="received", deliveries=0,
                                review_reason=None), lock)
        # Pending again before anything else: if queueing fails now, --unprocessed still finds it.
        st.client.sadd(pending_key(st.prefix), *entry_ids)
        st.reviews.remove(txid)
        return True
    finally:
        lock.release()


def requeue(refs: list[Ref], st: Stores, publisher: Publisher, *, force: bool = False,
            from_dlq: bool = False, on_progress: Progress | None = None,
            should_stop: StopFlag | None = None) -> RequeueReport:
    """Queue the task for each selected entry (invalid ones are skipped); see the module docstring."""
    report = RequeueReport(selected=len(refs))
    live = [r for r in refs if r.status != "invalid" and r.transaction_id]
    report.skipped_invalid = len(refs) - len(live)
    txids = list(dict.fromkeys(str(r.transaction_id) for r in live))
    recs = load_many(st, txids)
    if force:
        by_tx: dict[str, list[str]] = {}
        for r in live:
            by_tx.setdefault(str(r.transaction_id), []).append(r.entry_id)
        for txid in txids:
            if force_eligible(recs.get(txid)) and _reset(st, txid, by_tx[txid]):
                report.redecided.append(txid)
    final = {t for t, rec in recs.items() if rec.state in ("approved", "review", "rejected", "failed")}
    for done, ref in enumerate(live, 1):
        if should_stop is not None and should_stop():
            report.interrupted = True
            break
        publisher.publish(ref.entry_id)
        report.queued += 1
        if str(ref.transaction_id) in final and str(ref.transaction_id) not in report.redecided:
            report.already_final += 1
        if from_dlq:
            st.deadletters.remove(ref.entry_id)
        if on_progress is not None:
            on_progress(done, len(live))
    return report
