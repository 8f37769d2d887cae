"""The dry-run backtest: decide selected notifications again, in process, and compare.

Each transaction is decided with the given rule book on the facts its record
stored at decision time (money back to Decimal), so nothing calls VIP Connect
or the wallet and nothing is written. A transaction never decided has no
stored facts: it is decided on what its notification alone says (account,
wallet and velocity unknown) and shown with ``(none)`` recorded. Records are
read with MGET ``batch`` at a time.

The worker asks only the sources its rules read (``TransactionRecord.unasked``
lists the others). When the candidate rules read such a source, those facts are
unknown in the stored record, not absent in the world: the report counts those
transactions per source (``unasked``) so that their differences are read as such.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rules import RuleBook, RuleError
from worker.config import LimitsSettings
from worker.errors import NotificationError
from worker.facts import Enrichment, build_facts, facts_from_record
from worker.notification import decode_body, parse_notification
from worker.replay import Progress, Ref, StopFlag, Stores, parse_record
from worker.store.records import TransactionRecord

NONE = "(none)"
ERROR = "(error)"


@dataclass(frozen=True)
class Difference:
    """A transaction whose new decision differs from the recorded one (outcome or matched rules)."""

    transaction_id: str
    transaction_type: str | None
    recorded: str  # an outcome, or NONE when never decided
    new: str  # an outcome, or ERROR with ``error`` saying why
    added: tuple[str, ...] = ()  # rules matching now that did not
    removed: tuple[str, ...] = ()  # rules that matched and no longer do
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"transaction_id": self.transaction_id, "transaction_type": self.transaction_type,
                "recorded": self.recorded, "new": self.new, "added": list(self.added),
                "removed": list(self.removed), "error": self.error}


@dataclass
class BacktestReport:
    """Differences, and outcome totals before and after, over the transactions decided."""

    transactions: int = 0
    differences: list[Difference] = field(default_factory=list)
    before: Counter[str] = field(default_factory=Counter)
    after: Counter[str] = field(default_factory=Counter)
    unasked: Counter[str] = field(default_factory=Counter)  # source -> transactions decided without it
    interrupted: bool = False

    def totals(self) -> dict[str, Any]:
        """The closing totals (as printed after the differences)."""
        return {"transactions": self.transactions, "differences": len(self.differences),
                "before": dict(sorted(self.before.items())), "after": dict(sorted(self.after.items())),
                "unasked": dict(sorted(self.unasked.items())), "interrupted": self.interrupted}


def _recorded(rec: TransactionRecord | None) -> tuple[str, tuple[str, ...]]:
    decision = rec.decision if rec is not None else None
    if not decision:
        return NONE, ()
    return str(decision.get("outcome")), tuple(str(m.get("id")) for m in decision.get("matched", ()))


def _facts(ref: Ref, rec: TransactionRecord | None, body: bytes | None,
           limits: LimitsSettings) -> tuple[str | None, dict[str, Any]]:
    if rec is not None and rec.decision and rec.facts:
        ttype = rec.transaction_type or str(rec.decision.get("ruleset"))
        return ttype, facts_from_record(rec.facts)
    if body is None:
        raise NotificationError("body", "the archived notification is no longer there (trimmed?)")
    note = parse_notification(decode_body(body), "withdraw" if ref.kind == "withdraw" else "deposit")
    return note.transaction_type, build_facts(note, Enrichment(), limits)


def _bodies(st: Stores, entry_ids: list[str]) -> dict[str, bytes]:
    if not entry_ids:
        return {}
    pipe = st.client.pipeline(transaction=False)
    for entry_id in entry_ids:
        pipe.xrange(st.archive.key, entry_id, entry_id, count=1)
    out: dict[str, bytes] = {}
    for entry_id, rows in zip(entry_ids, pipe.execute(), strict=True):
        if rows:
            out[entry_id] = rows[0][1].get(b"body", b"")
    return out


def _compare(report: BacktestReport, ref: Ref, rec: TransactionRecord | None, body: bytes | None,
             book: RuleBook, limits: LimitsSettings) -> None:
    txid = str(ref.transaction_id)
    recorded, was = _recorded(rec)
    report.before[recorded] += 1
    ttype = rec.transaction_type if rec is not None else None
    try:
        ttype, facts = _facts(ref, rec, body, limits)
        decision = book.decide(str(ttype), facts)
    except (RuleError, NotificationError, ValueError) as exc:
        report.after[ERROR] += 1
        message = str(exc) if isinstance(exc, RuleError | NotificationError) else type(exc).__name__
        report.differences.append(Difference(txid, ttype, recorded, ERROR, error=message))
        return
    report.after[decision.outcome] += 1
    for source in rec.unasked if rec is not None and rec.decision else ():
        if book.reads(str(ttype), source):
            report.unasked[source] += 1
    now = decision.matched_ids
    if decision.outcome != recorded or set(now) != set(was):
        report.differences.append(Difference(
            txid, ttype, recorded, decision.outcome,
            added=tuple(i for i in now if i not in was), removed=tuple(i for i in was if i not in now)))


def backtest(refs: list[Ref], st: Stores, book: RuleBook, limits: LimitsSettings, *, batch: int = 1000,
             on_progress: Progress | None = None, should_stop: StopFlag | None = None) -> BacktestReport:
    """Decide each selected transaction once with ``book``; nothing is called and nothing written."""
    report = BacktestReport()
    seen: set[str] = set()
    todo: list[Ref] = []
    for ref in refs:  # one row per transaction: duplicates, conflicts and VIP error notifications aside
        if ref.status == "invalid" or ref.kind == "error" or not ref.transaction_id:
            continue
        if ref.transaction_id not in seen:
            seen.add(ref.transaction_id)
            todo.append(ref)
    for start in range(0, len(todo), batch):
        if should_stop is not None and should_stop():
            report.interrupted = True
            break
        chunk = todo[start:start + batch]
        raws = st.client.mget([st.records.record_key(str(r.transaction_id)) for r in chunk])
        recs = [None if raw is None else parse_record(str(r.transaction_id), raw)
                for r, raw in zip(chunk, raws, strict=True)]
        undecided = [r.entry_id for r, rec in zip(chunk, recs, strict=True)
                     if rec is None or not rec.decision or not rec.facts]
        bodies = _bodies(st, undecided)
        for ref, rec in zip(chunk, recs, strict=True):
            _compare(report, ref, rec, bodies.get(ref.entry_id), book, limits)
        report.transactions += len(chunk)
        if on_progress is not None:
            on_progress(report.transactions, len(todo))
    return report
