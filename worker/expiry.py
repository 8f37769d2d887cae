"""Expiry: holds and approvals left waiting past ``wallet.hold_max_age_s`` are released, and their
transactions end in ``expired``.

A withdrawal's funds are frozen from its hold until VIP Connect's approval is captured or the hold is
released. When nothing finishes it (a review nobody works, a worker that never came back, an approval
VIP never confirmed), the patron's money would stay frozen for ever. One worker at a time (a lease in
Redis), every ``wallet.expiry_interval_s``, looks at transactions first seen more than
``wallet.hold_max_age_s`` ago that still wait (``worker.ledger.states.EXPIRABLE``) and, under each
one's lock:

- ``approving`` (an approval started, its answer unknown): asks VIP Connect's transaction lookup first.
  Approved there: the approval is recorded and the hold captured, as the task would have. Not approved:
  expired like the rest. The lookup failing: left for the next round (never expired blind).
- anything else waiting (received, decided, frozen, review): any hold is released, an ``expire`` step is
  recorded with the age and the limit, and the transaction moves to ``expired``.

``capturing``/``crediting`` are never expired: VIP Connect approved them, so the task keeps retrying
the wallet, and the delivery limit sends a lasting failure to review and the dead letters.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from worker import actions
from worker.errors import VipApiError, WalletError, WalletTransientError, reason
from worker.ledger import RecordWriter, State, TransactionRecord
from worker.ledger.states import EXPIRABLE
from worker.metrics import EXPIRED
from worker.pipeline import Deps
from worker.store import keys
from worker.store.locks import LockBusy, LockLost
from worker.velocity_marks import mark_from_ledger
from worker.vip.protocol import ApprovalKind

log = logging.getLogger("vipflow.expiry")
LEASE_S = 300.0


@dataclass
class ExpiryRound:
    """What one round did, by transaction id."""

    expired: list[str] = field(default_factory=list)
    approved: list[str] = field(default_factory=list)  # found approved at VIP: settled instead
    skipped: dict[str, str] = field(default_factory=dict)  # left for a later round, with why


def expire_once(deps: Deps, now: float | None = None, limit: int = 500) -> ExpiryRound:
    """One round over up to ``limit`` transactions older than ``wallet.hold_max_age_s`` (seconds) at
    ``now`` (epoch seconds; default the clock). Empty when another worker holds the lease. Raises
    StoreError/LedgerUnavailable when Redis or the ledger fail (the next round tries again)."""
    now = time.time() if now is None else now
    out = ExpiryRound()
    client: Any = deps.locks.redis
    lease, token = keys.expiry_lease(deps.locks.prefix), secrets.token_hex(8)
    if not client.set(lease, token, nx=True, px=int(LEASE_S * 1000)):
        return out
    try:
        max_age = deps.settings.wallet.hold_max_age_s
        for rec in deps.ledger.older_in(EXPIRABLE, now - max_age, limit):
            _one(deps, rec.transaction_id, now, max_age, out)
    finally:
        if client.get(lease) == token.encode():
            client.delete(lease)
    if out.expired or out.approved:
        log.info("expiry round", extra={"expired": len(out.expired), "approved": len(out.approved),
                                        "skipped": len(out.skipped)})
    return out


def _one(deps: Deps, transaction_id: str, now: float, max_age: int, out: ExpiryRound) -> None:
    lock = deps.locks.lock(transaction_id)
    try:
        lock.acquire()
    except LockBusy:
        out.skipped[transaction_id] = "a task holds its lock"
        return
    try:
        save = RecordWriter(deps.ledger, lock, deps.ledger.load(transaction_id))
        rec = save.latest
        if rec is None or rec.state not in EXPIRABLE:
            return  # it moved on since the query
        if rec.succeeded("approve"):  # back in review after VIP approved it (a changed body): a person's
            out.skipped[transaction_id] = "VIP Connect approved it; a person decides"
            return
        waited_in = str(rec.state)
        if rec.state == State.APPROVING:
            try:
                found = deps.vip.lookup_transaction(transaction_id)
            except VipApiError as exc:
                out.skipped[transaction_id] = f"VIP Connect's lookup failed ({reason(exc)})"
                return
            if found is not None and found.approved:
                _settle_found(deps, rec, save, found.raw, out)
                return
        try:
            rec = actions.release(rec, save, deps.wallet)
        except WalletError as exc:
            out.skipped[transaction_id] = f"the wallet failed to release ({reason(exc)})"
            return
        age = max(0.0, now - (rec.created_at or now))
        save(rec.with_action("expire", "done", {"age_s": round(age), "max_age_s": max_age,
                                                 "waited_in": waited_in}).moved(State.EXPIRED))
        EXPIRED.labels(rec.transaction_type or "unknown", waited_in).inc()
        log.info("expired: left waiting too long", extra={
            "transaction_id": transaction_id, "state": waited_in, "age_s": round(age)})
        out.expired.append(transaction_id)
        mark_from_ledger(deps.velocity, deps.ledger, save.latest or rec)
    except LockLost:
        out.skipped[transaction_id] = "another worker took it over"
    finally:
        lock.release()


def _settle_found(deps: Deps, rec: TransactionRecord, save: RecordWriter, found: dict[str, Any],
                  out: ExpiryRound) -> None:
    """VIP Connect says the approval completed: record it, and capture (or credit) as the task would."""
    kind: ApprovalKind = "withdraw" if rec.transaction_type == "withdraw" else "deposit"
    then = actions.settling_state(rec, kind, deps.settings.wallet.credit_deposits)
    rec = save(rec.with_action("approve", "done", {"status": "already_approved", "result": found,
                                                    "found_by": "expiry"}).moved(then))
    try:
        patron, amount = _patron_and_amount(deps, rec)
        save(actions.settle(rec, save, deps.wallet, patron_id=patron, amount=amount))
        out.approved.append(rec.transaction_id)
        mark_from_ledger(deps.velocity, deps.ledger, save.latest or rec)
    except WalletTransientError as exc:
        out.skipped[rec.transaction_id] = f"approved at VIP; the wallet failed ({reason(exc)})"
    except actions.SettlementRefused as exc:
        actions.send_to_review(save.latest or rec, save, f"VIP Connect approved it but {exc}")
        out.skipped[rec.transaction_id] = str(exc)


def _patron_and_amount(deps: Deps, rec: TransactionRecord) -> tuple[str | None, Decimal | None]:
    """The patron and amount of a deposit to credit, from its first valid notification."""
    from worker.notification import decode_body, parse_notification

    for n in deps.ledger.notifications_of(rec.transaction_id):
        if n.status == "valid" and n.kind in ("deposit", "withdraw"):
            note = parse_notification(decode_body(n.body), "withdraw" if n.kind == "withdraw" else "deposit")
            return note.patron_id, note.amount
    try:
        return None, Decimal(rec.amount) if rec.amount else None
    except InvalidOperation:
        return None, None


class Expirer:
    """Runs :func:`expire_once` every ``wallet.expiry_interval_s`` seconds in a daemon thread."""

    def __init__(self, deps: Deps):
        self._deps = deps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vipflow-expiry", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits for a round in progress)."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        interval = self._deps.settings.wallet.expiry_interval_s
        while not self._stop.wait(interval):
            try:
                expire_once(self._deps)
            except Exception as exc:  # noqa: BLE001 - the next round tries again; the worker goes on
                log.warning("expiry round failed (%s); trying again later", type(exc).__name__)
