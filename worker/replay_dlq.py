"""``vipflow replay --dlq``: each open dead letter, and what the replay did with it.

A dead letter stays open in the ledger until its transaction is final
(``Ledger.dead_letters``); a replay never closes one by itself. For each open
letter, oldest first, the replay does one of these, and says which:

- ``requeued``: the transaction is unfinished (received, decided, or an action
  in flight: frozen, approving, capturing, crediting) or has no record yet: its notification is queued again and the
  worker carries it on (never approving twice).
- ``redecided``: with ``force``, a transaction in review that may be decided
  again (``replay.force_eligible``): the ``redecide`` step is recorded under its
  lock, with who asked, and its notification queued.
- ``left_in_review``: a plain re-queue would leave it in review, so nothing is
  queued; a person settles it (``vipflow review``), or ``--force`` decides it again.
- ``already_final``: the transaction became final since the letter was
  listed (a reviewer settled it): nothing to do, and the letter is closed.
- ``conflict_shown``: a changed body for a transaction that had already ended
  (``conflict_after_end``): nothing is queued (money may have moved); the
  person is told to compare the bodies, and the letter is closed.
- ``missing`` / ``invalid``: its notification is in neither the ledger nor the
  intake buffer, or was refused at the door: nothing can be queued; kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from worker.deliveries import CONFLICT_AFTER_END
from worker.ledger.states import State, is_final
from worker.replay import Progress, Selection, StopFlag, Stores, force_eligible, redecide
from worker.store.archive import ArchivedNotification
from worker.store.publisher import Publisher

REQUEUED = "requeued"
REDECIDED = "redecided"
LEFT_IN_REVIEW = "left_in_review"
ALREADY_FINAL = "already_final"
CONFLICT_SHOWN = "conflict_shown"
MISSING = "missing"
INVALID = "invalid"


@dataclass(frozen=True)
class LetterOutcome:
    """What the replay did with one dead letter (``result`` one of the module's constants), in words too."""

    letter_id: int
    entry_id: str
    transaction_id: str | None
    state: str | None  # the transaction's state when it was looked at (None: no record)
    result: str
    message: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"letter": self.letter_id, "entry_id": self.entry_id, "transaction_id": self.transaction_id,
                "state": self.state, "result": self.result, "message": self.message}


@dataclass
class DlqReport:
    """Every open letter's outcome, counted by result, and how many letters were closed before (their
    transactions final)."""

    outcomes: list[LetterOutcome] = field(default_factory=list)
    closed_before: int = 0
    interrupted: bool = False

    @property
    def counts(self) -> Counter[str]:
        """Letters per result."""
        return Counter(o.result for o in self.outcomes)


_SAY = {
    REQUEUED: "re-queued (it was {state}); the letter stays open until the transaction is final",
    REDECIDED: "decided again (--force) and re-queued; the earlier decision stays in the ledger",
    LEFT_IN_REVIEW: ("left in review: a re-queue would not move it; settle it with `vipflow review approve|reject "
                     "{txid}`, or decide it again with `vipflow replay --dlq --force`"),
    ALREADY_FINAL: "already final ({state}): left alone; the letter is closed",
    CONFLICT_SHOWN: ("a changed body arrived after it ended ({state}): nothing is re-queued (money may have "
                     "moved); compare the bodies with `vipflow tx show {txid}`; the letter is closed"),
    MISSING: "its notification is in neither the ledger nor the intake buffer: nothing to re-queue; kept",
    INVALID: "its notification was refused at the door (invalid): nothing to re-queue; kept",
}


def _in_window(sel: Selection, entry: ArchivedNotification | None) -> bool:
    if sel.since_ms is None and sel.until_ms is None:
        return True
    if entry is None:
        return False  # its receipt time is unknown: not in any window asked for
    lo = sel.since_ms if sel.since_ms is not None else -1
    hi = sel.until_ms if sel.until_ms is not None else 2**63
    return lo <= entry.received_at <= hi


def replay_dead_letters(sel: Selection, st: Stores, publisher: Publisher, *, force: bool = False,
                        actor: str | None = None, on_progress: Progress | None = None,
                        should_stop: StopFlag | None = None,
                        on_outcome: Callable[[LetterOutcome], None] | None = None) -> DlqReport:
    """Go through the open dead letters (narrowed by ``sel``'s time window), queue again those whose
    transaction a worker can carry on, and say per letter what was done (see the module docstring);
    ``force`` needs ``actor``. Each entry is queued at most once, however many letters name it."""
    if force and not actor:
        raise ValueError("replay --dlq --force records who asked: pass actor (worker.ledger.actor.cli_actor)")
    letters = st.ledger.dead_letters()
    report = DlqReport(closed_before=len(st.ledger.dead_letters(include_closed=True)) - len(letters))
    done: dict[str, tuple[str, str | None]] = {}  # entry id -> (result, state) of its first letter
    for n, letter in enumerate(letters, 1):
        if should_stop is not None and should_stop():
            report.interrupted = True
            break
        entry = st.archive.get(letter.entry_id) or st.ledger.notification(letter.entry_id)
        if not _in_window(sel, entry):
            continue
        if letter.entry_id in done:
            result, state = done[letter.entry_id]
        elif letter.reason == CONFLICT_AFTER_END:
            result, state = CONFLICT_SHOWN, letter.state
            done[letter.entry_id] = (result, state)
            st.ledger.mark_requeued(letter.entry_id)  # shown to a person: closed
        else:
            result, state = _replay_one(letter.transaction_id, entry, st, publisher, force, actor)
            done[letter.entry_id] = (result, state)
            if result in (REQUEUED, REDECIDED):
                st.ledger.mark_requeued(letter.entry_id)
        message = _SAY[result].format(state=state or "not recorded yet", txid=letter.transaction_id)
        outcome = LetterOutcome(letter.id, letter.entry_id, letter.transaction_id, state, result, message)
        report.outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
        if on_progress is not None:
            on_progress(n, len(letters))
    return report


def _replay_one(txid: str | None, entry: ArchivedNotification | None, st: Stores, publisher: Publisher,
                force: bool, actor: str | None) -> tuple[str, str | None]:
    """One entry's result and its transaction's state (read now, not when the letters were listed)."""
    if entry is None:
        return MISSING, None
    if entry.status == "invalid" or not (txid or entry.transaction_id):
        return INVALID, None
    txid = str(txid or entry.transaction_id)
    stored = st.ledger.load(txid)
    rec = stored.record if stored is not None else None
    state = str(rec.state) if rec is not None else None
    if rec is not None and is_final(rec.state):
        return ALREADY_FINAL, state
    if force and force_eligible(rec) and redecide(st, txid, [entry.entry_id], str(actor)):
        publisher.publish(entry.entry_id)
        return REDECIDED, state
    if rec is not None and rec.state == State.REVIEW:
        return LEFT_IN_REVIEW, state
    publisher.publish(entry.entry_id)
    return REQUEUED, state
