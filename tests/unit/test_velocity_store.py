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
    v = _store(redis_url).observe("withdraw", "7210695258", "tx00000001", Decimal("10.00"), T0)
    assert v.counts == {"1h": 0, "24h": 0} and v.amounts == {"1h": Decimal(0), "24h": Decimal(0)}


def test_windows_count_and_sum_earlier_transactions_exactly(redis_url: str) -> None:
    """Earlier transactions count in the windows they fall in, summed to the cent (0.10 + 0.20 = 0.30)."""
    store = _store(redis_url)
    store.observe("withdraw", "card1", "tx00000001", Decimal("0.10"), T0 - 7200)  # 2 h ago: 24h only
    store.observe("withdraw", "card1", "tx-00000002", Decimal("0.20"), T0 - 60)
    v = store.observe("withdraw", "card1", "tx-00000003", Decimal("5.00"), T0)
    assert v.counts == {"1h": 1, "24h": 2}
    assert v.amounts == {"1h": Decimal("0.20"), "24h": Decimal("0.30")}


def test_a_redelivered_transaction_counts_once_and_excludes_itself(redis_url: str) -> None:
    """Observing the same transaction again changes nothing and never counts it against itself."""
    store = _store(redis_url)
    store.observe("withdraw", "card1", "tx00000001", Decimal("1.00"), T0 - 10)
    first = store.observe("withdraw", "card1", "tx-00000002", Decimal("2.00"), T0)
    again = store.observe("withdraw", "card1", "tx-00000002", Decimal("2.00"), T0 + 5)
    assert first == again and first.counts["24h"] == 1


def test_types_and_cards_are_separate(redis_url: str) -> None:
    """Deposits do not count as withdrawals, and one card's history is not another's."""
    store = _store(redis_url)
    store.observe("deposit", "card1", "tx00000001", Decimal("1.00"), T0 - 10)
    store.observe("withdraw", "card2", "tx-00000002", Decimal("1.00"), T0 - 10)
    v = store.observe("withdraw", "card1", "tx-00000003", Decimal("1.00"), T0)
    assert v.counts == {"1h": 0, "24h": 0}


def test_entries_older_than_twice_the_widest_window_are_dropped(redis_url: str) -> None:
    """History past 48 h leaves both keys (the set and the id hash); newer history stays."""
    client = redis.Redis.from_url(redis_url)
    store = VelocityStore(client, "t")
    store.observe("withdraw", "card1", "tx00000001", Decimal("1.00"), T0 - 3 * 86400)
    store.observe("withdraw", "card1", "tx-00000002", Decimal("2.00"), T0 - 86400 - 60)  # kept, outside 24h
    v = store.observe("withdraw", "card1", "tx-00000003", Decimal("3.00"), T0)
    assert v.counts == {"1h": 0, "24h": 0}
    assert client.zcard("t:velocity:withdraw:card1") == 2
    assert sorted(client.hkeys("t:velocity:withdraw:card1:seen")) == [b"tx-00000002", b"tx-00000003"]


def test_a_redelivery_with_another_amount_keeps_the_first(redis_url: str) -> None:
    """The amount first seen for a transaction is the one counted, whatever a later body says."""
    store = _store(redis_url)
    store.observe("withdraw", "card1", "tx00000001", Decimal("1.00"), T0 - 10)
    store.observe("withdraw", "card1", "tx00000001", Decimal("900.00"), T0 - 5)
    v = store.observe("withdraw", "card1", "tx-00000002", Decimal("2.00"), T0)
    assert v.counts["1h"] == 1 and v.amounts["1h"] == Decimal("1.00")
