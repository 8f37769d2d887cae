"""Velocity: how many transactions of one type a VIP card made recently, and their sum.

Per card and type, a sorted set of transaction ids scored by the time they were
received and a hash of their amounts in integer cents. Adding is keyed by
transaction id with ``NX``, so a duplicate notification or a redelivered task
counts once; the figures for a transaction exclude the transaction itself.
Counting and summing happen in one Lua script, server-side: a busy card's
window is never copied to the worker (that was half the worker's CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rules.money import to_cents

WINDOWS_S: dict[str, int] = {"1h": 3600, "24h": 86400}
_KEEP_S = max(WINDOWS_S.values())

# KEYS: zset, hash. ARGV: transaction id, at, cents, keep_s, then one window width per window.
# Returns count and cents per window, in ARGV order. Cents are exact in Lua's doubles up to 2**53.
_OBSERVE = """
local tx, at, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], 'NX', at, tx)
redis.call('HSETNX', KEYS[2], tx, ARGV[3])
redis.call('EXPIRE', KEYS[1], keep * 2)
redis.call('EXPIRE', KEYS[2], keep * 2)
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. tostring(at - keep * 2))
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(old))
end
local out = {}
for i = 5, #ARGV do
  local since = at - tonumber(ARGV[i])
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], since, at)
  local count, cents = 0, 0
  for _, id in ipairs(ids) do
    if id ~= tx then
      count = count + 1
      cents = cents + (tonumber(redis.call('HGET', KEYS[2], id)) or 0)
    end
  end
  table.insert(out, count)
  table.insert(out, string.format('%d', cents))
end
return out
"""


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
        self._observe = redis.register_script(_OBSERVE)

    def _keys(self, transaction_type: str, vip_card_number: str) -> tuple[str, str]:
        base = f"{self._prefix}:vel:{transaction_type}:{vip_card_number}"
        return base, base + ":cents"

    def observe(self, transaction_type: str, vip_card_number: str, transaction_id: str,
                amount: Decimal, at: float) -> Velocity:
        """Count this transaction once and return the windows before ``at``, excluding it."""
        zkey, hkey = self._keys(transaction_type, vip_card_number)
        widths = list(WINDOWS_S.items())
        raw = self._observe(keys=[zkey, hkey],
                            args=[transaction_id, repr(at), to_cents(amount), _KEEP_S, *(w for _, w in widths)])
        counts: dict[str, int] = {}
        sums: dict[str, Decimal] = {}
        for i, (name, _) in enumerate(widths):
            counts[name] = int(raw[2 * i])
            cents = raw[2 * i + 1]
            sums[name] = Decimal(int(cents.decode() if isinstance(cents, bytes) else cents)) / 100
        return Velocity(counts, sums)
