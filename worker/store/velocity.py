"""Velocity: how many transactions of one type a VIP card made recently, and their sum.

Per card and type, a sorted set of transaction ids scored by the time they were
received and a hash of their amounts. Adding is keyed by transaction id with
``NX``, so a duplicate notification or a redelivered task counts once; the
figures for a transaction exclude the transaction itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

WINDOWS_S: dict[str, int] = {"1h": 3600, "24h": 86400}
_KEEP_S = max(WINDOWS_S.values())


@dataclass(frozen=True)
class Velocity:
    """Counts and sums per window name (``1h``, ``24h``)."""

    counts: dict[str, int]
    amounts: dict[str, Decimal]


class VelocityStore:
    """Record transactions per VIP card and type, and measure the windows before one."""

    def __init__(self, redis: Any, prefix: str):
        self._redis = redis
        self._prefix = prefix

    def _keys(self, transaction_type: str, vip_card_number: str) -> tuple[str, str]:
        base = f"{self._prefix}:vel:{transaction_type}:{vip_card_number}"
        return base, base + ":amounts"

    def observe(self, transaction_type: str, vip_card_number: str, transaction_id: str,
                amount: Decimal, at: float) -> Velocity:
        """Count this transaction once and return the windows before ``at``, excluding it."""
        zkey, hkey = self._keys(transaction_type, vip_card_number)
        pipe = self._redis.pipeline(transaction=True)
        pipe.zadd(zkey, {transaction_id: at}, nx=True)
        pipe.hsetnx(hkey, transaction_id, str(amount))
        pipe.zrangebyscore(zkey, at - _KEEP_S, at, withscores=True)
        pipe.expire(zkey, _KEEP_S * 2)
        pipe.expire(hkey, _KEEP_S * 2)
        _, _, members = pipe.execute()[:3]
        self._trim(zkey, hkey, at)
        scores = {(m.decode() if isinstance(m, bytes) else str(m)): float(s) for m, s in members}
        scores.pop(transaction_id, None)
        ids = list(scores)
        raw = self._redis.hmget(hkey, ids) if ids else []
        amounts = {i: Decimal(v.decode() if isinstance(v, bytes) else v)
                   for i, v in zip(ids, raw, strict=True) if v is not None}
        counts: dict[str, int] = {}
        sums: dict[str, Decimal] = {}
        for name, width in WINDOWS_S.items():
            inside = [i for i in ids if scores[i] >= at - width]
            counts[name] = len(inside)
            sums[name] = sum((amounts.get(i, Decimal(0)) for i in inside), Decimal(0))
        return Velocity(counts, sums)

    def _trim(self, zkey: str, hkey: str, at: float) -> None:
        # Entries older than the widest window can never count again.
        old = self._redis.zrangebyscore(zkey, "-inf", at - _KEEP_S * 2)
        if old:
            self._redis.zrem(zkey, *old)
            self._redis.hdel(hkey, *old)
