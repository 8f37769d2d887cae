"""Velocity: how many transactions of one type a VIP card made recently, and their sum.

Per card and type, a sorted set of ``transaction id|cents`` members scored by the
time they were received, and a hash from transaction id to its member. Adding is
keyed by transaction id (``HSETNX``), so a duplicate notification or a redelivered
task counts once, with its first amount; the figures for a transaction exclude the
transaction itself. Counting and summing happen in one Lua script, server-side, in
one pass over the widest window: a busy card's window is never copied to the
worker, and the amounts ride in the members, so no per-entry lookup is needed.
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
# At most 2000 expired entries go per call (Lua's unpack limit); the rest go on the next calls.
_OBSERVE = """
local tx, at, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
local member = tx .. '|' .. ARGV[3]
if redis.call('HSETNX', KEYS[2], tx, member) == 1 then
  redis.call('ZADD', KEYS[1], at, member)
else
  member = redis.call('HGET', KEYS[2], tx)
end
redis.call('EXPIRE', KEYS[1], keep * 2)
redis.call('EXPIRE', KEYS[2], keep * 2)
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. tostring(at - keep * 2), 'LIMIT', 0, 2000)
if #old > 0 then
  local ids = {}
  for i, m in ipairs(old) do ids[i] = string.match(m, '^(.*)|') end
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(ids))
end
local widest = 0
for i = 5, #ARGV do widest = math.max(widest, tonumber(ARGV[i])) end
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], at - widest, at, 'WITHSCORES')
local counts, sums = {}, {}
for i = 5, #ARGV do counts[i], sums[i] = 0, 0 end
for j = 1, #rows, 2 do
  local m = rows[j]
  if m ~= member then
    local age, cents = at - tonumber(rows[j + 1]), tonumber(string.match(m, '|(-?%d+)$')) or 0
    for i = 5, #ARGV do
      if age <= tonumber(ARGV[i]) then counts[i], sums[i] = counts[i] + 1, sums[i] + cents end
    end
  end
end
local out = {}
for i = 5, #ARGV do
  table.insert(out, counts[i])
  table.insert(out, string.format('%d', sums[i]))
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
        base = f"{self._prefix}:velocity:{transaction_type}:{vip_card_number}"
        return base, base + ":seen"

    def observe(self, transaction_type: str, vip_card_number: str, transaction_id: str,
                amount: Decimal, at: float) -> Velocity:
        """Count this transaction once and return the windows before ``at``, excluding it."""
        return self.parse(self._run(self._redis, transaction_type, vip_card_number, transaction_id, amount, at))

    def queue_observe(self, pipe: Any, transaction_type: str, vip_card_number: str, transaction_id: str,
                      amount: Decimal, at: float) -> None:
        """Queue :meth:`observe` on pipeline ``pipe`` by the script's SHA (a pipeline given the script
        itself asks SCRIPT EXISTS first, a round trip more); :meth:`parse` its result. On NoScriptError
        (Redis restarted), :meth:`load_script` and run the pipeline again."""
        keys, args = self._keys(transaction_type, vip_card_number), self._args(transaction_id, amount, at)
        pipe.evalsha(self._observe.sha, len(keys), *keys, *args)

    def load_script(self) -> None:
        """Load the script into Redis (after a restart emptied its script cache)."""
        self._redis.script_load(_OBSERVE)

    def _run(self, client: Any, transaction_type: str, vip_card_number: str, transaction_id: str,
             amount: Decimal, at: float) -> Any:
        return self._observe(keys=list(self._keys(transaction_type, vip_card_number)),
                             args=self._args(transaction_id, amount, at), client=client)

    @staticmethod
    def _args(transaction_id: str, amount: Decimal, at: float) -> list[Any]:
        return [transaction_id, repr(at), to_cents(amount), _KEEP_S, *WINDOWS_S.values()]

    @staticmethod
    def parse(raw: Any) -> Velocity:
        """The script's answer as a Velocity."""
        counts: dict[str, int] = {}
        sums: dict[str, Decimal] = {}
        for i, name in enumerate(WINDOWS_S):
            counts[name] = int(raw[2 * i])
            cents = raw[2 * i + 1]
            sums[name] = Decimal(int(cents.decode() if isinstance(cents, bytes) else cents)) / 100
        return Velocity(counts, sums)
