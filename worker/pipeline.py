"""Process one notification: lock, record in the ledger, enrich, decide, act.

Every step is idempotent and recorded in the ledger, so a duplicate
notification, a redelivered task or a worker killed anywhere ends in the same
single decision and the same single approval and freeze. Redis and ledger
failures propagate (the task is delivered again); anything else unexpected is
recorded and sent to review, never approved.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import redis

from rules import Decision, RuleBook
from rules.lists import EMPTY, NamedList
from worker import actions, deliveries, rollout
from worker.config import Settings
from worker.enrich import SOURCES, enrich
from worker.errors import StoreError, WalletError, WalletTransientError
from worker.facts import build_facts, facts_for_record
from worker.ledger import Ledger, NotificationSeen, RecordWriter, State, TransactionRecord
from worker.ledger.patron_cards import CardSeen, PatronCards
from worker.ledger.session_guard import SessionUnread
from worker.ledger.sessions import SessionStore
from worker.ledger.states import is_final, is_settled
from worker.ledger.store import Stored
from worker.masking import mask_value
from worker.metrics import ACTIONS, count_decision, count_side
from worker.notification import Notification, decode_body, parse_notification
from worker.patron import UNKNOWN_PATRON, PatronFinder
from worker.rollout import Side
from worker.shadow import count_shadow, decide_shadow
from worker.store.accounts import AccountCache
from worker.store.archive import Archive, ArchivedNotification
from worker.store.locks import Locks, TxLock
from worker.store.velocity import VelocityStore
from worker.velocity_marks import mark_from_ledger, marker
from worker.vip.protocol import ApprovalKind, VipApi
from worker.vip.retry import RetryPolicy
from worker.wallet.protocol import Wallet

log = logging.getLogger("vipflow.pipeline")

CONFLICT_REASON = "conflicting body for the same transaction id"
# VIP Connect's error model: the fields kept from an error notification.
_ERROR_FIELDS = ("errorCode", "transactionStage", "operatorErrorMessage", "operatorDeclineDescription",
                 "patronErrorMessage", "resolution", "errorMessage")


class RuleSource(Protocol):
    """Where a task gets the rule book it decides with (``worker.reload.RuleHolder``)."""

    def current(self) -> RuleBook:
        """The rule book in force now."""
        ...


class ListSource(Protocol):
    """Where a task gets the named lists it decides with (``worker.lists.holder.ListHolder``)."""

    def current(self) -> Mapping[str, NamedList]:
        """The lists in force now, by name."""
        ...


@dataclass(frozen=True)
class Deps:
    """Everything a task needs; built by ``worker.bootstrap``, or by tests with fakes."""

    settings: Settings
    archive: Archive  # the intake buffer (Redis) until the ledger holds a notification
    ledger: Ledger
    locks: Locks
    accounts: AccountCache
    velocity: VelocityStore
    vip: VipApi
    wallet: Wallet
    rules: RuleSource
    sleep: Any = time.sleep
    shadow: RuleSource | None = None  # rules.shadow: decided beside the live rules, never acted on
    lists: ListSource | None = None  # the named lists in force (``worker.lists.holder.ListHolder``)
    candidate: RuleSource | None = None  # rules.candidate: decides rules.candidate_share of transactions


def notification(entry_id: str, deps: Deps) -> ArchivedNotification | None:
    """The notification ``entry_id`` from the intake buffer, else from the ledger; None when neither has it."""
    return deps.archive.get(entry_id) or deps.ledger.notification(entry_id)


def process(entry_id: str, deps: Deps) -> TransactionRecord | None:
    """Decide and act on notification ``entry_id``; None when there is nothing to do.

    Raises StoreError (Redis or the ledger failed: deliver again) and LockBusy.
    """
    entry = notification(entry_id, deps)
    if entry is None:
        log.warning("notification not found in the intake buffer nor the ledger", extra={"entry_id": entry_id})
        return None
    if entry.status == "invalid" or not entry.transaction_id:
        deps.ledger.add_notifications([entry], done=[entry_id])
        deps.archive.forget(entry_id)
        return None
    # Read once: a reload mid-task does not change this decision. The side depends on the id alone.
    book, side = rollout.choose(entry.transaction_id, entry.kind, deps.rules, deps.candidate,
                                deps.settings.rules.candidate_share)
    lock = deps.locks.lock(entry.transaction_id)
    count, known, retried = lock.begin(wait_s=min(deps.settings.worker.lock_ttl_s, 30))  # before any work
    finished = False
    try:
        # A first delivery writes without reading: the ledger refuses it (LockLost, retried) in the rare case
        # that it already knows the transaction, and the next delivery reads it.
        stored = deps.ledger.load(entry.transaction_id) if count > 1 or known else None
        # A first delivery also decides without reading its patron session, its first write guarded
        # (worker.ledger.session_guard); unless this process met sessions lately.
        defer = stored is None and count == 1 and not _SESSIONS_MET.lately()
        try:
            done = _locked(entry, book, deps, lock, stored, count, retried, side, defer_session=defer)
        except SessionUnread:
            # Nothing was written and nothing done outside: decide again, reading the session.
            _SESSIONS_MET.now()
            log.info("an open patron session exists; deciding again with it",
                     extra={"transaction_id": entry.transaction_id})
            done = _locked(entry, book, deps, lock, stored, count, retried, side)
        finished = True
        return done
    except (StoreError, redis.RedisError, WalletTransientError):
        _retrying(lock)
        raise
    finally:
        if not finished:
            lock.release()  # staged "done" steps are dropped: the next delivery repeats them safely


def _locked(entry: ArchivedNotification, book: RuleBook, deps: Deps, lock: TxLock, stored: Stored | None,
            count: int, retried: int, side: Side = rollout.CURRENT, defer_session: bool = False) -> TransactionRecord:
    """The work under the transaction's lock, from ``stored`` (None: the ledger has no record of it) to the
    finish. Raises SessionUnread (``defer_session``: nothing written yet), StoreError."""
    save = RecordWriter(deps.ledger, lock, stored, deferred=True, notification=entry)
    save.session_unread = defer_session
    rec = _received(stored.record if stored else None, entry, count, save)
    parsed = _Parsed()
    try:
        rec = _handle(entry, rec, book, deps, save, parsed, unfinished=count - retried, side=side,
                      defer_session=defer_session)
    except (StoreError, redis.RedisError, WalletTransientError):
        raise  # redeliver: nothing is lost, every step is recorded and idempotent
    except Exception as exc:
        log.exception("unexpected error; sending to review",
                      extra={"transaction_id": entry.transaction_id})
        rec = save((save.latest or rec).with_error(f"unexpected {type(exc).__name__} while processing"))
        if not is_final(rec.state):
            rec = actions.send_to_review(rec, save, f"unexpected {type(exc).__name__} while processing")
        deliveries.dead_letter(deps.ledger, entry.entry_id, rec.transaction_id,
                               f"unexpected {type(exc).__name__} while processing", rec.deliveries,
                               deliveries.UNEXPECTED_ERROR, save=save)
    # Commit what is staged with the done mark (the guarded first write when nothing was written yet),
    # then drop the buffer entry, release the lock and move the transaction between the velocity
    # tallies, in one Redis round trip.
    before = str(stored.record.state) if stored else None
    save.finish(done_entry=entry.entry_id, also=marker(deps.velocity, parsed.note, entry.received_at / 1000, before),
                reload=deps.velocity.load_script)
    if entry.kind == "error" and save.latest is not None:
        mark_from_ledger(deps.velocity, deps.ledger, save.latest)
    return save.latest or rec


class _RecentlyMet:
    """When this process last met an open patron session its decision had not read (monotonic seconds).
    While sessions are met (an operator site that opens them through ``vipflow web``), reading each one
    first is cheaper than a refused first write followed by a second decision."""

    FOR_S = 600.0

    def __init__(self) -> None:
        self.at: float | None = None

    def now(self) -> None:
        """Remember that a session was met now."""
        self.at = time.monotonic()

    def lately(self) -> bool:
        """True when one was met in the last FOR_S seconds."""
        return self.at is not None and time.monotonic() - self.at < self.FOR_S


_SESSIONS_MET = _RecentlyMet()


def _retrying(lock: TxLock) -> None:
    """The task will retry this delivery: it ended, so the delivery limit does not count it."""
    # When Redis is what failed, the delivery stays counted: the limit errs on the safe side.
    with contextlib.suppress(redis.RedisError):
        lock.retrying()


def _received(stored: TransactionRecord | None, entry: ArchivedNotification, count: int,
              save: RecordWriter) -> TransactionRecord:
    """This delivery on the record, staged for the task's first write. The delivery was counted in Redis
    with the lock, before any work, so a notification that keeps killing its worker is stopped by
    ``worker.max_deliveries`` even though none of its tasks reached the ledger."""
    seen = NotificationSeen(entry.entry_id, entry.kind, entry.status, str(entry.received_at))
    rec = stored or TransactionRecord(transaction_id=str(entry.transaction_id))
    rec = replace(rec.with_notification(seen), deliveries=max(count, rec.deliveries + 1), delivered_at=time.time())
    log.log(logging.DEBUG if stored is None else logging.INFO, "delivery", extra={
        "transaction_id": rec.transaction_id, "entry_id": entry.entry_id, "kind": entry.kind,
        "delivery": rec.deliveries, "state": str(rec.state)})
    return save.stage(rec)


@dataclass
class _Parsed:
    """The notification as the task parsed it (None when it did not need to)."""

    note: Notification | None = None


def _handle(entry: ArchivedNotification, rec: TransactionRecord, book: RuleBook, deps: Deps,
            save: actions.Save, parsed: _Parsed, unfinished: int = 1, side: Side = rollout.CURRENT,
            defer_session: bool = False) -> TransactionRecord:
    """``unfinished``: this transaction's deliveries that did not end in the task's own retry (this one
    included): those past ``worker.max_deliveries`` kept killing their worker. ``side``: the rollout side
    ``book`` is on (``worker.rollout``), recorded with the decision. ``defer_session``: decide as if no
    patron session were open (``save`` then carries the session guard)."""
    if entry.kind == "error":
        return _failed(entry, rec, save, deps)
    if is_settled(rec.state):
        if entry.status == "conflict" and not _conflict_seen(rec, entry.entry_id):
            return _conflict_after(entry, rec, save, deps.ledger)
        if entry.status == "conflict":
            rec = save(rec.with_error(f"{CONFLICT_REASON}; ignored, the transaction is already {rec.state}"))
        decided = (rec.decision or {}).get("content_hash")
        log.info("already handled; nothing to do", extra={
            "transaction_id": rec.transaction_id, "state": rec.state,
            "same_ruleset": decided == book.content_hash})
        return rec
    if entry.status == "conflict":
        # Which body is VIP's? A person decides; an approval already started is reconciled there.
        return actions.send_to_review(rec, save, CONFLICT_REASON)
    if unfinished > deps.settings.worker.max_deliveries:
        return deliveries.stop_redelivery(entry.entry_id, rec, save, deps.ledger,
                                          deps.settings.worker.max_deliveries, unfinished)
    note = parsed.note = parse_notification(decode_body(entry.body),
                                            "withdraw" if entry.kind == "withdraw" else "deposit")
    if note.patron_id and note.vip_card_number:  # taught to the ledger with this task's next write
        save.learn(CardSeen(str(note.vip_card_number), note.patron_id, entry.entry_id, entry.received_at))
    patrons = finder(note, deps, defer_session=defer_session)
    if rec.decision is None:
        rec = _decide(note, entry, rec, book, deps, save, patrons, side)
    return _act(note, entry, rec, deps, save, patrons)


def finder(note: Notification, deps: Deps, *, defer_session: bool = False) -> PatronFinder:
    """The notification's patron finder on the ledger's sessions and learned cards and the wallet
    (``defer_session``: see ``PatronFinder``)."""
    sessions, cards = _ledger_readers(deps.ledger)
    return PatronFinder(note, sessions=sessions, cards=cards, wallet=deps.wallet, defer_session=defer_session)


_READERS: weakref.WeakKeyDictionary[Ledger, tuple[SessionStore, PatronCards]] = weakref.WeakKeyDictionary()


def _ledger_readers(ledger: Ledger) -> tuple[SessionStore, PatronCards]:
    """The session and learned-card readers of ``ledger``, built once per ledger (each holds an engine
    view, costly to make per notification)."""
    found = _READERS.get(ledger)
    if found is None:
        found = _READERS[ledger] = (SessionStore(ledger.engine), PatronCards(ledger.engine))
    return found


def _conflict_seen(rec: TransactionRecord, entry_id: str) -> bool:
    """True when this conflicting notification was already put before a person (a redelivery)."""
    return any(a.name in ("review", "conflict") and (a.result or {}).get("conflict_entry") == entry_id
               for a in rec.actions)


def _conflict_after(entry: ArchivedNotification, rec: TransactionRecord, save: actions.Save,
                    ledger: Ledger) -> TransactionRecord:
    """A changed body for a transaction already decided goes before a person, as every conflict does.

    Waiting in review: the reason the reviewer reads now names the conflict. Ended (approved, rejected,
    expired, failed): its state stays, since an ended transaction never goes back (money may have moved),
    and the conflict becomes a ``conflict`` step and a dead letter (``conflict_after_end``), which people
    are alerted to and work with ``vipflow replay --dlq``."""
    if rec.state == State.REVIEW:
        reason = f"{CONFLICT_REASON} (earlier: {rec.review_reason or 'none'})"
        return save(replace(rec.with_action("review", "done", {"reason": reason, "conflict_entry": entry.entry_id}),
                            review_reason=reason))
    error = f"{CONFLICT_REASON} after it was {rec.state}"
    rec = save.stage(rec.with_action("conflict", "done", {"conflict_entry": entry.entry_id, "state": str(rec.state)}))
    deliveries.dead_letter(ledger, entry.entry_id, rec.transaction_id, error, rec.deliveries,
                           deliveries.CONFLICT_AFTER_END, save=save)
    return save.latest or rec


def _decide(note: Notification, entry: ArchivedNotification, rec: TransactionRecord, book: RuleBook,
            deps: Deps, save: actions.Save, patrons: PatronFinder, side: Side = rollout.CURRENT) -> TransactionRecord:
    vip = deps.settings.vip
    retry = RetryPolicy(vip.inquiry_max_attempts, vip.backoff_base_s, vip.backoff_max_s, deps.sleep)
    found = enrich(note, entry.received_at / 1000, vip=deps.vip, accounts=deps.accounts,
                   wallet=deps.wallet, velocity=deps.velocity, asks=_asks(str(note.transaction_type), book, deps),
                   patrons=patrons, sessions_required=deps.settings.sessions.required, retry=retry)
    facts = build_facts(note, found.found, deps.settings.limits)
    lists = deps.lists.current() if deps.lists is not None else EMPTY  # read once, as the book
    decision = book.decide(str(note.transaction_type), facts, lists)
    deps.ledger.remember_rulesets(book.rulesets.values())  # the rule text, once per version
    for problem in found.problems:
        rec = rec.with_error(problem)
    shadow = None
    if deps.shadow is not None:
        shadow = decide_shadow(deps.shadow, str(note.transaction_type), facts, decision, rec.transaction_id, lists)
    rec = replace(rec, transaction_type=note.transaction_type, amount=str(note.amount),
                  references=_references(note), decision=_recorded(decision, side, deps), shadow_decision=shadow,
                  facts=facts_for_record(facts), unasked=found.unasked, decided_at=time.time()).moved(State.DECIDED)
    log.info("decided", extra={
        "transaction_id": rec.transaction_id, "outcome": decision.outcome,
        "matched": [m.id for m in decision.matched], "ruleset": decision.ruleset,
        "version": decision.version, "content_hash": decision.content_hash, "side": side})

    def counted() -> None:  # once stored: counted once
        count_decision(decision.ruleset, decision.outcome, decision.matched_ids)
        count_side(decision.ruleset, side, decision.outcome)
        if shadow is not None:
            count_shadow(decision.outcome, shadow)

    # Stored with the first action's "started" step (before any side effect), or at the end.
    return save.stage(rec, after=counted)


def _recorded(decision: Decision, side: Side, deps: Deps) -> dict[str, Any]:
    """The decision as recorded: its rollout side always; while a rollout runs (a candidate with a share above
    0), the share too, so that a reader of the record knows a candidate could have decided it."""
    out = {**decision.to_dict(), "side": side}
    share = deps.settings.rules.candidate_share
    if deps.candidate is not None and share > 0:
        out["candidate_share"] = f"{share:.2f}"
    return out


def _asks(transaction_type: str, book: RuleBook, deps: Deps) -> frozenset[str]:
    """The sources the live rules (and the shadow rules) read for this type: only those are asked."""
    books = [book]
    if deps.shadow is not None:
        try:
            books.append(deps.shadow.current())
        except Exception:  # noqa: BLE001 - the candidate must never break the live decision
            return SOURCES
    return frozenset(s for s in SOURCES if any(b.reads(transaction_type, s) for b in books))


def _act(note: Notification, entry: ArchivedNotification, rec: TransactionRecord, deps: Deps,
         save: actions.Save, patrons: PatronFinder) -> TransactionRecord:
    decision = rec.decision or {}
    outcome = decision.get("outcome")
    kind: ApprovalKind = "withdraw" if note.transaction_type == "withdraw" else "deposit"
    if outcome == "reject":
        return actions.reject(rec, save, deps.wallet)
    # Only withdrawals are frozen: a withdrawal takes money the wallet already holds, so it is held
    # until VIP Connect pays it out; a deposit's money is not in the wallet yet, there is nothing to hold.
    if decision.get("freeze") and kind == "withdraw":
        refused = freeze_for(rec, save, deps.wallet, patrons)
        if refused is not None:
            return actions.send_to_review(save.latest or rec, save, refused)
        rec = save.latest or rec
    if outcome == "approve":
        vip = deps.settings.vip
        rec = actions.approve(
            rec, save, deps.vip, kind, actions.approval_body(kind, decode_body(entry.body)),
            max_attempts=vip.max_attempts, backoff_base_s=vip.backoff_base_s,
            backoff_max_s=vip.backoff_max_s, sleep=deps.sleep,
            then=actions.settling_state(rec, kind, deps.settings.wallet.credit_deposits))
        try:
            return actions.settle(rec, save, deps.wallet, patron_id=note.patron_id, amount=note.amount)
        except actions.SettlementRefused as exc:
            return actions.send_to_review(save.latest or rec, save, f"VIP Connect approved it but {exc}")
    reason = "the rules said review" if outcome == "review" else f"unknown outcome {outcome!r}"
    matched = [m.get("id") for m in decision.get("matched", ())]
    return actions.send_to_review(rec, save, f"{reason} (matched: {', '.join(matched) or 'none'})")


def freeze_for(rec: TransactionRecord, save: actions.Save, wallet: Wallet, patrons: PatronFinder) -> str | None:
    """Hold the withdrawal's amount in the wallet of the patron ``patrons`` finds, the source recorded on
    the freeze step; None when frozen, else why not (the patron unknown, no amount, the wallet refused or
    could not name the patron). WalletTransientError propagates (the task is delivered again)."""
    note = patrons.note
    if rec.action_done("freeze"):
        return None  # held already (or refused before: that answer stands)
    if note.amount is None:
        return "cannot freeze: the notification has no amount"
    try:
        found = patrons.find()
    except WalletTransientError:
        raise
    except WalletError as exc:
        return f"cannot freeze: the wallet could not name the VIP card's patron ({exc})"
    if found.patron_id is None or found.source is None:
        return f"cannot freeze: {UNKNOWN_PATRON}"
    try:
        actions.freeze(rec, save, wallet, found.patron_id, note.amount, patron_source=found.source)
    except actions.FreezeRefused as exc:
        return f"the wallet refused the freeze ({exc.reason})"
    return None


def _failed(entry: ArchivedNotification, rec: TransactionRecord, save: actions.Save,
            deps: Deps) -> TransactionRecord:
    if rec.state == State.FAILED and not actions.needs_unwinding(rec):
        return rec
    try:
        body = decode_body(entry.body)
    except Exception:  # noqa: BLE001 - an unreadable error body still fails the transaction
        body = {}
    folded = {str(k).lower(): v for k, v in body.items()} if isinstance(body, dict) else {}
    error = {name: folded.get(name.lower()) for name in _ERROR_FIELDS if name.lower() in folded}
    rec = save(rec.with_action("fail", "started", {"vip_error": error}))
    rec = actions.unwind(rec, save, deps.wallet)  # held: released; captured: reversed
    log.info("failed by VIP Connect", extra={"transaction_id": rec.transaction_id})
    return save.stage(rec.with_action("fail", "done", {"vip_error": error}).moved(State.FAILED),
                      after=lambda: ACTIONS.labels("fail", "done").inc())


def _references(note: Notification) -> dict[str, str | None]:
    def masked(value: Any) -> str | None:
        return None if value is None else mask_value(value)

    return {
        "patron_id": masked(note.patron_id),
        "vip_card_number": masked(note.vip_card_number),
        "masked_bank_account_number": masked(note.masked_bank_account_number),
        "bank_routing_number": masked(note.bank_routing_number),
        "bank_name": note.bank_name,
        "product_type": note.product_type,
        "fund_transfer_type": note.fund_transfer_type,
    }
