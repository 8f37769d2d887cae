"""Velocity per VIP card: counted once per transaction, exact sums, windows, this transaction excluded."""

from __future__ import annotations

from decimal import Decimal

import redis

from worker.store.velocity import VelocityStore

T0 = 1_800_000_000.0


def _store(url: str) -> VelocityStore:
    return VelocityStore(redis.Redis.from_url(url), "t")


def test_first_transaction_sees_empty_windows(redis_url: str) -> None:
    """The first withdrawal on a card sees no earlier ones."""
    v = _store(redis_url).observe("withdraw", "7210695258", "tx-00000001", Decimal("10.00"), T0)
    assert v.counts == {"1h": 0, "24h": 0} and v.amounts == {"1h": Decimal(0), "24h": Decimal(0)}


def test_windows_count_and_sum_earlier_transactions_exactly(redis_url: str) -> None:
    """Earlier transactions count in the windows they fall in, summed to the cent (0.10 + 0.20 = 0.30)."""
    store = _store(redis_url)
    store.observe("withdraw", "card1", "tx-00000001", Decimal("0.10"), T0 - 7200)  # 2 h ago: 24h only
    store.observe("withdraw", "card1", "tx-00000002", Decimal("0.20"), T0 - 60)
    v = store.observe("withdraw", "card1", "tx-00000003", Decimal("5.00"), T0)
    assert v.counts == {"1h": 1, "24h": 2}
    assert v.amounts == {"1h": Decimal("0.20"), "24h": Decimal("0.30")}


def test_a_redelivered_transaction_counts_once_and_excludes_itself(redis_url: str) -> None:
    """Observing the same transaction again changes nothing and never counts it against itself."""
    store = _store(redis_url)
    store.observe("withdraw", "card1", "tx-00000001", Decimal("1.00"), T0 - 10)
    first = store.observe("withdraw", "card1", "tx-00000002", Decimal("2.00"), T0)
    again = store.observe("withdraw", "card1", "tx-00000002", Decimal("2.00"), T0 + 5)
    assert first == again and first.counts["24h"] == 1


def test_types_and_cards_are_separate(redis_url: str) -> None:
    """Deposits do not count as withdrawals, and one card's history is not another's."""
    store = _store(redis_url)
    store.observe("deposit", "card1", "tx-00000001", Decimal("1.00"), T0 - 10)
    store.observe("withdraw", "card2", "tx-00000002", Decimal("1.00"), T0 - 10)
    v = store.observe("withdraw", "card1", "tx-00000003", Decimal("1.00"), T0)
    assert v.counts == {"1h": 0, "24h": 0}
