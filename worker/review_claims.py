"""Reviewers' claims on queued transactions: who works on what, in Redis, each claim a ledger event.

A claim is the key ``worker.store.keys.claim`` holding the claiming actor, expiring after
``review.claim_idle_s`` without use; each page view or act by the holder renews it (:func:`touch`).
Claiming and giving a claim up are ``human`` events (``claim``, ``unclaim``) in the ledger, written
under the transaction's lock like every other event. A claim is advisory for viewing and binding for
deciding (``worker.review_workspace`` checks it under the lock of the decision).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from worker import review_service as rs
from worker.ledger.events import NewEvent
from worker.ledger.writer import RecordWriter
from worker.pipeline import Deps
from worker.review_roles import Forbidden, Permission, Reviewer, require
from worker.store import keys


def claim_holders(deps: Deps, transaction_ids: Iterable[str]) -> dict[str, str]:
    """Who holds a live claim on each of ``transaction_ids`` (those unclaimed are left out)."""
    ids = list(transaction_ids)
    if not ids:
        return {}
    prefix = deps.settings.redis.key_prefix
    values = deps.locks.redis.mget([keys.claim(prefix, txid) for txid in ids])
    return {txid: (v.decode() if isinstance(v, bytes) else str(v)) for txid, v in zip(ids, values, strict=True)
            if v is not None}


def human_event(deps: Deps, transaction_id: str, who: Reviewer, name: str, data: Mapping[str, Any]) -> None:
    """Append one human event (no change of state) to ``transaction_id`` under its lock; NotInReview when
    vipflow has no record of it."""
    lock = rs.locked(deps, transaction_id)
    try:
        stored = deps.ledger.load(transaction_id)
        if stored is None:
            raise rs.NotInReview(f"vipflow has no record of transaction {transaction_id}")
        save = RecordWriter(deps.ledger, lock, stored)
        save(stored.record, extra=[NewEvent("human", time.time(), name, "done", who.actor, dict(data))])
    finally:
        lock.release()


def claim(deps: Deps, who: Reviewer, transaction_id: str) -> str:
    """Claim a queued transaction for ``who`` (renewing their own claim); the holder afterwards. Forbidden
    when someone else holds a live claim; NotInReview when it is not queued."""
    require(who.role, Permission.CLAIM, "claim transactions")
    rs.queued_record(deps.ledger, transaction_id)
    key = keys.claim(deps.settings.redis.key_prefix, transaction_id)
    ttl = deps.settings.review.claim_idle_s
    r = deps.locks.redis
    if r.set(key, who.actor, nx=True, ex=ttl):
        human_event(deps, transaction_id, who, "claim", {"idle_s": ttl})
        return who.actor
    holder = r.get(key)
    holder_s = holder.decode() if isinstance(holder, bytes) else holder
    if holder_s == who.actor:
        r.expire(key, ttl)
        return who.actor
    if holder_s is None:  # it lapsed between the two calls: try once more
        return claim(deps, who, transaction_id)
    raise Forbidden(f"transaction {transaction_id} is claimed by {holder_s}; pick another, or wait until the "
                    f"claim lapses ({ttl} s idle)")


def touch(deps: Deps, who: Reviewer, transaction_id: str) -> str | None:
    """Renew ``who``'s claim on ``transaction_id`` if they hold it (they are working on it); the holder."""
    key = keys.claim(deps.settings.redis.key_prefix, transaction_id)
    holder = deps.locks.redis.get(key)
    holder_s = holder.decode() if isinstance(holder, bytes) else holder
    if holder_s == who.actor:
        deps.locks.redis.expire(key, deps.settings.review.claim_idle_s)
    return holder_s


def release(deps: Deps, who: Reviewer, transaction_id: str, *, record: bool = True) -> None:
    """Give up ``who``'s claim on ``transaction_id`` (nothing when they hold none)."""
    key = keys.claim(deps.settings.redis.key_prefix, transaction_id)
    if touch(deps, who, transaction_id) == who.actor:
        deps.locks.redis.delete(key)
        if record:
            human_event(deps, transaction_id, who, "unclaim", {})
