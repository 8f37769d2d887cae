"""Velocity: what one VIP card did recently with one transaction type, by what became of it.

Three tallies per card and type, each a count and a sum over 1 hour, 24 hours and 7 days, before the
transaction being decided (never counting itself):

- ``attempts``: every transaction notified, whatever became of it (a burst of tries is the signal);
- ``approved``: those VIP Connect approved (money that moved);
- ``pending``: those decided but not ended: held withdrawals, approvals in flight, reviews waiting.

Each is a sorted set of ``transaction id|cents`` members scored by the time the notification was
received. ``attempts`` is written when a transaction is first decided, keyed by transaction id
(``HSETNX`` on a hash beside it), so a duplicate or a redelivery counts once with its first amount.
``approved`` and ``pending`` are written when a task, a reviewer or expiry leaves the transaction in a
new state (:meth:`VelocityStore.queue_mark`): approved moves it from pending to approved; an end
(rejected, failed, expired) takes it out of both. Counting and summing happen in one Lua script,
server-side, in one pass per set over the widest window: a busy card's sets are never copied to the
worker. Every key lives ``KEEP_S`` plus an hour after its last write.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rules.money import to_cents
from worker.store import keys

WINDOWS_S: dict[str, int] = {"1h": 3600, "24h": 86400, "7d": 604800}
KINDS = ("attempts", "approved", "pending")
KEEP_S = max(WINDOWS_S.values())
_TTL_S = KEEP_S + 3600

# KEYS: attempts zset, its hash, approved zset, pending zset. ARGV: transaction id, at, cents, keep_s,
# ttl_s, then one window width per window. Returns, per set in KEYS order (attempts, approved, pending),
# count and cents per window, in ARGV order. Cents are exact in Lua's doubles up to 2**53. At most 2000
# expired attempts go per call (Lua's unpack limit); the rest go on the next calls.
_OBSERVE = """
local tx, at, keep, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
local member = tx .. '|' .. ARGV[3]
if redis.call('HSETNX', KEYS[2], tx, member) == 1 then
  redis.call('ZADD', KEYS[1], at, member)
else
  member = redis.call('HGET', KEYS[2], tx)
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
local cut = '(' .. tostring(at - keep)
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cut, 'LIMIT', 0, 2000)
if #old > 0 then
  local ids = {}
  for i, m in ipairs(old) do ids[i] = string.match(m, '^(.*)|') end
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(ids))
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', cut)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', cut)
local widest = 0
for i = 6, #ARGV do widest = math.max(widest, tonumber(ARGV[i])) end
local out = {}
for _, key in ipairs({KEYS[1], KEYS[3], KEYS[4]}) do
  local rows = redis.call('ZRANGEBYSCORE', key, at - widest, at, 'WITHSCORES')
  local counts, sums = {}, {}
  for i = 6, #ARGV do counts[i], sums[i] = 0, 0 end
  for j = 1, #rows, 2 do
    local m = rows[j]
    if string.match(m, '^(.*)|') ~= tx then
      local age, cents = at - tonumber(rows[j + 1]), tonumber(string.match(m, '|(-?%d+)$')) or 0
      for i = 6, #ARGV do
        if age <= tonumber(ARGV[i]) then counts[i], sums[i] = counts[i] + 1, sums[i] + cents end
      end
    end
  end
  for i = 6, #ARGV do
    table.insert(out, counts[i])
    table.insert(out, string.format('%d', sums[i]))
  end
end
return out
"""

# KEYS: approved zset, pending zset. ARGV: member, at, status (approved | pending | ended), ttl_s.
_MARK = """
if ARGV[3] == 'approved' then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
elseif ARGV[3] == 'pending' then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""


@dataclass(frozen=True)
class Tally:
    """Counts and sums (Decimal dollars) per window name (``1h``, ``24h``, ``7d``)."""

    counts: dict[str, int]
    amounts: dict[str, Decimal]


@dataclass(frozen=True)
class Velocity:
    """The three tallies before one transaction: ``counts``/``amounts`` are the attempts (every
    transaction notified); ``approved`` and ``pending`` as the module docstring says."""

    counts: dict[str, int]
    amounts: dict[str, Decimal]
    approved: Tally | None = None
    pending: Tally | None = None

    def tally(self, kind: str) -> Tally | None:
        """The tally of ``kind`` (``attempts``, ``approved``, ``pending``), or ``committed``: approved and
        pending together (money that moved or is held to move)."""
        if kind == "attempts":
            return Tally(self.counts, self.amounts)
        if kind == "committed":
            if self.approved is None or self.pending is None:
                return None
            a, p = self.approved, self.pending
            return Tally({w: a.counts[w] + p.counts[w] for w in a.counts},
                         {w: a.amounts[w] + p.amounts[w] for w in a.amounts})
        found: Tally | None = getattr(self, kind, None)
        return found


def mark_status(state: str) -> str | None:
    """Where a transaction in ``state`` belongs in the velocity tallies: ``approved``, ``pending`` or
    ``ended``; None before it was decided (received: nothing to count yet)."""
    if state == "approved":
        return "approved"
    if state in ("rejected", "failed", "expired"):
        return "ended"
    if state == "received":
        return None
    return "pending"


class VelocityStore:
    """Record transactions per VIP card and type, and measure the windows before one."""

    def __init__(self, redis: Any, prefix: str):
        self._redis = redis
        self._prefix = prefix
        self._observe = redis.register_script(_OBSERVE)
        self._mark = redis.register_script(_MARK)

    def _keys(self, transaction_type: str, vip_card_number: str) -> tuple[str, str, str, str]:
        base = keys.velocity(self._prefix, transaction_type, vip_card_number)
        return base, base + ":seen", base + ":approved", base + ":pending"

    def observe(self, transaction_type: str, vip_card_number: str, transaction_id: str,
                amount: Decimal, at: float) -> Velocity:
        """Count this transaction's attempt once and return the tallies before ``at`` (epoch seconds),
        excluding it; ``amount`` in Decimal dollars."""
        return self.parse(self._observe(keys=list(self._keys(transaction_type, vip_card_number)),
                                        args=self._args(transaction_id, amount, at)))

    def queue_observe(self, pipe: Any, transaction_type: str, vip_card_number: str, transaction_id: str,
                      amount: Decimal, at: float) -> None:
        """Queue :meth:`observe` on pipeline ``pipe`` by the script's SHA (a pipeline given the script
        itself asks SCRIPT EXISTS first, a round trip more); :meth:`parse` its result. On NoScriptError
        (Redis restarted), :meth:`load_script` and run the pipeline again."""
        keys_, args = self._keys(transaction_type, vip_card_number), self._args(transaction_id, amount, at)
        pipe.evalsha(self._observe.sha, len(keys_), *keys_, *args)

    def queue_mark(self, pipe: Any, transaction_type: str, vip_card_number: str, transaction_id: str,
                   amount: Decimal, at: float, status: str) -> None:
        """Queue, on pipeline ``pipe`` (by the script's SHA: see :meth:`queue_observe`), moving the
        transaction into the ``approved`` or ``pending`` tally, or out of both (``ended``); ``amount`` in
        Decimal dollars, ``at`` its notification's receipt (epoch seconds). Idempotent. On NoScriptError,
        :meth:`load_script` and run the pipeline again."""
        _, _, approved, pending = self._keys(transaction_type, vip_card_number)
        pipe.evalsha(self._mark.sha, 2, approved, pending, f"{transaction_id}|{to_cents(amount)}", repr(at), status,
                     _TTL_S)

    def mark(self, transaction_type: str, vip_card_number: str, transaction_id: str, amount: Decimal,
             at: float, status: str) -> None:
        """:meth:`queue_mark`, run now (one round trip; the script loaded again after a Redis restart)."""
        _, _, approved, pending = self._keys(transaction_type, vip_card_number)
        self._mark(keys=[approved, pending], args=[f"{transaction_id}|{to_cents(amount)}", repr(at), status, _TTL_S])

    def load_script(self) -> None:
        """Load the scripts into Redis (after a restart emptied its script cache)."""
        self._redis.script_load(_OBSERVE)
        self._redis.script_load(_MARK)

    @staticmethod
    def _args(transaction_id: str, amount: Decimal, at: float) -> list[Any]:
        return [transaction_id, repr(at), to_cents(amount), KEEP_S, _TTL_S, *WINDOWS_S.values()]

    @staticmethod
    def parse(raw: Any) -> Velocity:
        """The observe script's answer as a Velocity."""
        tallies = []
        for k in range(len(KINDS)):
            counts: dict[str, int] = {}
            sums: dict[str, Decimal] = {}
            for i, name in enumerate(WINDOWS_S):
                at = 2 * (k * len(WINDOWS_S) + i)
                counts[name] = int(raw[at])
                cents = raw[at + 1]
                sums[name] = Decimal(int(cents.decode() if isinstance(cents, bytes) else cents)).scaleb(-2)  # x.yy
            tallies.append(Tally(counts, sums))
        attempts, approved, pending = tallies
        return Velocity(attempts.counts, attempts.amounts, approved, pending)
