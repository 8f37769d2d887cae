"""The dry-run backtest: decide selected notifications again, in process, and compare.

Each transaction is decided with the given rule book on the facts its record
stored at decision time (money as the strings stored, which the rules read
exactly), so nothing calls VIP Connect or the wallet and nothing is written.
A transaction never decided has no stored facts: it is decided on what its
notification alone says (account, wallet and velocity unknown) and shown with
``(none)`` recorded.

What changed is counted by kind, so that a candidate's effect is not overstated:
outcome changes of transactions decided before (the headline), rule-only changes
(same outcome, other matched rules), transactions never decided before (what
they would get now), and those the rules cannot decide now.

A time range is streamed from the ledger with constant memory: one query per
page of notifications brings each one's recorded decision, facts and unasked
sources (``Ledger.iter_recorded``; a body only where nothing was decided; on
PostgreSQL the rows are decided as they arrive while the server produces the
next ones), and differences go to ``on_difference`` as they are found (the
report keeps the first ``keep``). Other selections (ids, dead letters, unfinished) are small:
their records are read a page at a time with ``Ledger.load_many``.

Rules that name lists decide with the lists given (``lists``: the command passes the
ledger's lists as they are now, so a backtest answers "what would these rules and
today's lists decide"). A transaction decided before with other versions of those
lists is counted (``other_list_versions``): its difference may come from the lists,
not the rules. With ``as_decided`` each transaction is decided with the lists at the
versions its decision recorded instead (``--lists-as-decided``: a rule change alone).

The worker asks only the sources its rules read (``TransactionRecord.unasked``
lists the others). When the candidate rules read such a source, those facts are
unknown in the stored record, not absent in the world: the report counts those
transactions per source (``unasked``) so that their differences are read as such.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rules import Decision, RuleBook, RuleError
from rules.lists import EMPTY, ListLookup
from worker.config import LimitsSettings
from worker.errors import NotificationError
from worker.facts import Enrichment, build_facts
from worker.ledger.store import Recorded
from worker.notification import decode_body, parse_notification
from worker.replay import Progress, Selected, Selection, StopFlag, Stores, select

# Which book decides a transaction (its id and type), and the rollout side it is on (``worker.rollout``).
Pick = Callable[[str, str], tuple[RuleBook, str]]
# The lists for a recorded decision's list versions (None: it named none).
AsDecided = Callable[[Mapping[str, int] | None], ListLookup]

NONE = "(none)"
ERROR = "(error)"
PAGE = 5000  # notifications per ledger query

# How a transaction's new decision differs from what was recorded (a Difference's ``change``).
OUTCOME = "outcome"  # decided before, and the outcome changes: what the headline counts
RULE_ONLY = "rules"  # decided before, same outcome, different matched rules
UNDECIDED = "never decided"  # never decided before: what it would get now (no change of anything)
FAILED = "error"  # cannot be decided now (``error`` says why)


@dataclass(frozen=True)
class Difference:
    """A transaction whose new decision is not what was recorded: its outcome or its matched rules
    changed, it was never decided, or it cannot be decided now (``change`` says which)."""

    transaction_id: str
    transaction_type: str | None
    recorded: str  # an outcome, or NONE when never decided
    new: str  # an outcome, or ERROR with ``error`` saying why
    added: tuple[str, ...] = ()  # rules matching now that did not
    removed: tuple[str, ...] = ()  # rules that matched and no longer do
    error: str | None = None
    change: str = OUTCOME  # OUTCOME | RULE_ONLY | UNDECIDED | FAILED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"transaction_id": self.transaction_id, "transaction_type": self.transaction_type,
                "change": self.change, "recorded": self.recorded, "new": self.new, "added": list(self.added),
                "removed": list(self.removed), "error": self.error}


@dataclass
class BacktestReport:
    """Outcome totals before and after (NONE before: never decided), the differences by kind of change,
    and the first ``keep`` of them (None: all). The headline is ``outcome_changes`` of ``decided``:
    transactions decided before whose outcome the new rules change."""

    keep: int | None = 1000
    transactions: int = 0
    decided: int = 0  # decided before (a recorded outcome to compare with)
    outcome_changes: int = 0
    rule_changes: int = 0  # same outcome, other matched rules
    never_decided: int = 0
    errors: int = 0
    differences: list[Difference] = field(default_factory=list)
    before: Counter[str] = field(default_factory=Counter)
    after: Counter[str] = field(default_factory=Counter)
    unasked: Counter[str] = field(default_factory=Counter)  # source -> transactions decided without it
    missing: list[str] = field(default_factory=list)  # dead letters' entries no longer stored
    lists: dict[str, int] = field(default_factory=dict)  # the newest version of each list decided with
    other_list_versions: int = 0  # decided before with another version of a list decided with here
    sides: Counter[str] = field(default_factory=Counter)  # rollout side -> transactions it decided (with pick)
    baseline: str | None = None  # what "recorded" means when not the ledger's decisions (--compare A B)
    interrupted: bool = False
    on_difference: Callable[[Difference], None] | None = None

    @property
    def different(self) -> int:
        """How many differences of any kind were found (each handed to ``on_difference``)."""
        return self.outcome_changes + self.rule_changes + self.never_decided + self.errors

    def add(self, diff: Difference) -> None:
        """Count one difference by its kind, hand it to ``on_difference``, keep it while under ``keep``."""
        if diff.change == OUTCOME:
            self.outcome_changes += 1
        elif diff.change == RULE_ONLY:
            self.rule_changes += 1
        elif diff.change == UNDECIDED:
            self.never_decided += 1
        else:
            self.errors += 1
        if self.on_difference is not None:
            self.on_difference(diff)
        if self.keep is None or len(self.differences) < self.keep:
            self.differences.append(diff)

    def totals(self) -> dict[str, Any]:
        """The closing totals (as printed after the differences); ``lists`` and ``other_list_versions`` only
        when the rules name lists."""
        out = {"transactions": self.transactions, "decided_before": self.decided,
               "outcome_changes": self.outcome_changes, "rule_changes": self.rule_changes,
               "never_decided": self.never_decided, "errors": self.errors, "differences": self.different,
               "before": dict(sorted(self.before.items())), "after": dict(sorted(self.after.items())),
               "unasked": dict(sorted(self.unasked.items())), "interrupted": self.interrupted}
        if self.lists:  # only for rules that name lists: the versions decided with, and older decisions
            out.update(lists=dict(sorted(self.lists.items())), other_list_versions=self.other_list_versions)
        if self.sides:
            out["sides"] = dict(sorted(self.sides.items()))
        if self.baseline:
            out["baseline"] = self.baseline
        return out


def _facts(row: Recorded, st: Stores, limits: LimitsSettings) -> tuple[str | None, Mapping[str, Any]]:
    if row.decision and row.facts:
        # The facts as stored, money as strings: the rules engine reads those exactly, as it reads a
        # Decimal (``rules.facts.prepare``), so they are not converted here first.
        return row.transaction_type or str(row.decision.get("ruleset")), row.facts
    body = row.body
    if body is None:
        entry = st.archive.get(row.entry_id) or st.ledger.notification(row.entry_id)
        if entry is None:
            raise NotificationError("body", "the notification is in neither the ledger nor the intake buffer")
        body = entry.body
    note = parse_notification(decode_body(body), "withdraw" if row.kind == "withdraw" else "deposit")
    return note.transaction_type, build_facts(note, Enrichment(), limits)


@dataclass(frozen=True)
class Against:
    """How a backtest decides and what it compares with. ``pick``: the book per transaction (a rollout)
    instead of the one book; ``baseline``: compare with this book's decisions on the same facts instead of
    the recorded ones (two versions from the history, ``--compare A B``); ``only_type``: skip the other
    transaction types (not counted)."""

    pick: Pick | None = None
    baseline: RuleBook | None = None
    only_type: str | None = None
    others: tuple[RuleBook, ...] = ()  # the other books ``pick`` may choose (for the lists they name)


def _compare(report: BacktestReport, row: Recorded, st: Stores, book: RuleBook, limits: LimitsSettings,
             against: Against = Against(), lists: ListLookup = EMPTY, as_decided: AsDecided | None = None) -> bool:
    """Decide one transaction and count it; False when ``against.only_type`` skips it (not counted)."""
    ttype = row.transaction_type
    facts: Mapping[str, Any] | None = None
    failed: str | None = None
    try:
        ttype, facts = _facts(row, st, limits)
    except (RuleError, NotificationError, ValueError, ArithmeticError) as exc:
        failed = _why(exc)
    if against.only_type is not None and (facts is None or ttype != against.only_type):
        return False
    if as_decided is not None:  # the lists at the versions the recorded decision used
        lists = as_decided((row.decision or {}).get("lists"))
    recorded_decision = row.decision
    if against.baseline is not None and facts is not None:
        try:
            recorded_decision = against.baseline.decide(str(ttype), facts, lists).to_dict()
        except (RuleError, ValueError, ArithmeticError) as exc:
            failed, recorded_decision = f"the baseline cannot decide it: {_why(exc)}", None
    if recorded_decision:
        recorded = str(recorded_decision.get("outcome"))
        was = tuple([str(m.get("id")) for m in recorded_decision.get("matched", ())])
        report.decided += 1
    else:
        recorded, was = NONE, ()
    report.before[recorded] += 1
    decision: Decision | None = None
    if failed is None and facts is not None:
        try:
            used = book
            if against.pick is not None:
                used, side = against.pick(str(row.transaction_id), str(ttype))
                report.sides[side] += 1
            decision = used.decide(str(ttype), facts, lists)
        except (RuleError, ValueError, ArithmeticError) as exc:
            failed = _why(exc)
    if decision is None:
        report.after[ERROR] += 1
        report.add(Difference(str(row.transaction_id), ttype, recorded, ERROR, error=failed, change=FAILED))
        return True
    report.after[decision.outcome] += 1
    if decision.lists:
        for name, version in decision.lists.items():
            report.lists[name] = max(version, report.lists.get(name, version))
        if recorded_decision:
            was_lists = recorded_decision.get("lists") or {}
            if any(was_lists.get(name) != version for name, version in decision.lists.items()):
                report.other_list_versions += 1
    if recorded_decision and row.unasked:
        for source in row.unasked:
            if book.reads(str(ttype), source):
                report.unasked[source] += 1
    now = decision.matched_ids
    if not recorded_decision:
        change = UNDECIDED
    elif decision.outcome != recorded:
        change = OUTCOME
    elif set(now) != set(was):
        change = RULE_ONLY
    else:
        return True
    report.add(Difference(str(row.transaction_id), ttype, recorded, decision.outcome,
                          added=tuple(i for i in now if i not in was),
                          removed=tuple(i for i in was if i not in now), change=change))
    return True


def _why(exc: Exception) -> str:
    return (str(exc) if isinstance(exc, RuleError | NotificationError)
            else "a recorded fact has a value of the wrong kind for the rules")


def _listed(selected: Selected, st: Stores, page: int) -> Iterator[Recorded]:
    """A small selection's notifications with their transactions' records (read ``page`` at a time)."""
    seen: set[str] = set()
    refs = list(selected.refs)
    for start in range(0, len(refs), page):
        chunk = refs[start:start + page]
        stored = st.ledger.load_many(list(dict.fromkeys(str(r.transaction_id) for r in chunk if r.transaction_id)))
        for ref in chunk:
            found = stored.get(str(ref.transaction_id))
            rec = found.record if found is not None else None
            decidable = ref.status != "invalid" and ref.kind != "error" and bool(ref.transaction_id)
            repeat = decidable and str(ref.transaction_id) in seen
            if decidable:
                seen.add(str(ref.transaction_id))
            yield Recorded(
                ref.entry_id, ref.kind, ref.status, ref.transaction_id, ref.received_at,
                rec.transaction_type if rec is not None else None,
                dict(rec.decision) if rec is not None and rec.decision else None,
                dict(rec.facts) if rec is not None and rec.facts else None,
                rec.unasked if rec is not None else (), None, repeat)


def backtest(selection: Selection, st: Stores, book: RuleBook, limits: LimitsSettings, *, page: int = PAGE,
             keep: int | None = 1000, on_difference: Callable[[Difference], None] | None = None,
             on_progress: Progress | None = None, should_stop: StopFlag | None = None,
             against: Against = Against(), baseline_label: str | None = None,
             lists: ListLookup = EMPTY, as_decided: AsDecided | None = None) -> BacktestReport:
    """Decide each selected transaction once with ``book`` and ``lists`` (name -> NamedList, for rules that
    name lists) (its first decidable notification in the selection), or as ``against`` says; nothing is
    called and nothing written. ``as_decided``: instead of ``lists``, the lists at the versions each recorded
    decision names (``worker.lists.versions.ListsAsDecided.at``). ``page``: notifications per ledger query
    (progress and stop requests are looked at between pages). SelectionError as ``replay.select`` raises it."""
    report = BacktestReport(keep=keep, on_difference=on_difference, baseline=baseline_label)
    rows: Iterator[Recorded]
    if selection.by_time:
        total = st.ledger.count_notifications(selection.since_ms, selection.until_ms)
        rows = st.ledger.iter_recorded(selection.since_ms, selection.until_ms, batch=page)
    else:
        selected = select(selection, st)
        report.missing, total = selected.missing, selected.total
        rows = _listed(selected, st, page)
    done = 0
    for done, row in enumerate(rows, 1):
        # One per transaction: duplicates, invalid bodies and VIP error notifications aside.
        decidable = not (row.repeat or row.status == "invalid" or row.kind == "error" or not row.transaction_id)
        if decidable and _compare(report, row, st, book, limits, against, lists, as_decided):
            report.transactions += 1
        if done % page == 0:
            if on_progress is not None:
                on_progress(done, max(done, total))
            if should_stop is not None and should_stop():
                report.interrupted = True
                break
    if report.interrupted and hasattr(rows, "close"):
        rows.close()  # ends the ledger's query now rather than when collected
    elif on_progress is not None and done % page:
        on_progress(done, max(done, total))
    return report
