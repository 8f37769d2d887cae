"""Percentage rollout: a share of transactions decided and acted on by candidate rules.

``rules.candidate`` names a rule directory; ``rules.candidate_share`` (percent, 0 to 100 in 0.01 steps)
is the share of transactions it decides. Which side a transaction lands on is a function of its
transaction id alone: the first 8 bytes of sha256("vipflow-rollout:" + id), modulo 10,000, is its bucket,
and buckets below ``share * 100`` go to the candidate. So a transaction lands on the same side in every
worker, after a restart, on a redelivery and on a replay; and raising the share keeps every transaction
already on the candidate there (a bucket below 30.00 % is below 50.00 % too).

The candidate's gate is stricter than a hot reload's: ``rules check``, and every rule file with its own
tests beside it, all passing (``rules.testing.verify_tested_rulebook``). A candidate that fails it stops
the worker at start (``worker.startup``); a later edit that fails it is refused and the version in force
stays, as for the current rules. A candidate without a ruleset for a transaction type leaves that type to
the current rules (the decision says ``side: current``).

The shadow rules (``worker.shadow``) are separate: they decide beside whichever side acted, never acting.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Literal, Protocol

from rules import RuleBook

Side = Literal["current", "candidate"]
CURRENT: Side = "current"
CANDIDATE: Side = "candidate"
SIDES: tuple[Side, Side] = (CURRENT, CANDIDATE)
BUCKETS = 10_000  # 0.01 % steps
_SALT = b"vipflow-rollout:"


class BookSource(Protocol):
    """Anything with the rule book in force (``worker.reload.RuleHolder``)."""

    def current(self) -> RuleBook:
        """The rule book in force now."""
        ...


def bucket(transaction_id: str) -> int:
    """The transaction's rollout bucket, 0 to 9,999: stable across processes, hosts and Python versions."""
    digest = hashlib.sha256(_SALT + transaction_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def side_for(transaction_id: str, share: Decimal) -> Side:
    """``candidate`` for the ``share`` percent of transaction ids whose bucket is below ``share * 100``."""
    return CANDIDATE if bucket(transaction_id) < int(share * 100) else CURRENT


def choose(transaction_id: str, transaction_type: str, current: BookSource, candidate: BookSource | None,
           share: Decimal) -> tuple[RuleBook, Side]:
    """The rule book that decides this transaction, and its side. Each source is read once, so a reload
    mid-task does not change the decision. A candidate without a ruleset for the type leaves it current."""
    if candidate is not None and share > 0 and side_for(transaction_id, share) == CANDIDATE:
        book = candidate.current()
        if transaction_type in book.rulesets:
            return book, CANDIDATE
    return current.current(), CURRENT
