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
    assert v.counts == {"1h": 0, "24h": 0, "7d": 0}
    assert v.amounts == {"1h": Decimal(0), "24h": Decimal(0), "7d": Decimal(0)}


def test_windows_count_and_sum_earlier_transactions_exactly(redis_url: str) -> None:
    """Earlier transactions count in the windows they fall in, summed to the cent (0.10 + 0.20 = 0.30)."""
    store = _store(redis_url)
    store.observe("withdraw", "card1", "tx00000001", Decimal("0.10"), T0 - 7200)  # 2 h ago: 24h only
    store.observe("withdraw", "card1", "tx00000002", Decimal("0.20"), T0 - 60)
    v = store.observe("withdraw", "card1", "tx00000003", Decimal("5.00"), T0)
    assert v.counts == {"1h": 1, "24h": 2, "7d": 2}
    assert v.amounts == {"1h": Decimal("0.20"), "24h": Decimal("0.30"), "7d": Decimal("0.30")}


def test_a_redelivered_transaction_counts_once_and_excludes_itself(redis_url: str) -> None:
    """Observing the same transaction again changes nothing and never counts it against itself."""
    store = _store(redis_url)
    store.observe("withdraw", "card1", "tx00000001", Decimal("1.00"), T0 - 10)
    first = store.observe("withdraw", "card1", "tx00000002", Decimal("2.00"), T0)
    again = store.observe("withdraw", "card1", "tx00000002", Decimal("2.00"), T0 + 5)
    assert first == again and first.counts["24h"] == 1


def test_types_and_cards_are_separate(redis_url: str) -> None:
    """Deposits do not count as withdrawals, and one card's history is not another's."""
    store = _store(redis_url)
    store.observe("deposit", "card1", "tx00000001", Decimal("1.00"), T0 - 10)
    store.observe("withdraw", "card2", "tx00000002", Decimal("1.00"), T0 - 10)
    v = store.observe("withdraw", "card1", "tx00000003", Decimal("1.00"), T0)
    assert v.counts == {"1h": 0, "24h": 0, "7d": 0}


def test_entries_older_than_the_widest_window_are_dropped(redis_url: str) -> None:
    """History past 7 days leaves both keys (the set and the id hash); newer history stays."""
    client = redis.Redis.from_url(redis_url)
    store = VelocityStore(client, "t")
    store.observe("withdraw", "card1", "tx00000001", Decimal("1.00"), T0 - 8 * 86400)
    store.observe("withdraw", "card1", "tx00000002", Decimal("2.00"), T0 - 86400 - 60)  # kept, outside 24h
    v = store.observe("withdraw", "card1", "tx00000003", Decimal("3.00"), T0)
    assert v.counts == {"1h": 0, "24h": 0, "7d": 1}
    assert client.zcard("t:velocity:withdraw:card1") == 2
    assert sorted(client.hkeys("t:velocity:withdraw:card1:seen")) == [b"tx00000002", b"tx00000003"]


def test_a_redelivery_with_another_amount_keeps_the_first(redis_url: str) -> None:
    """The amount first seen for a transaction is the one counted, whatever a later body says."""
    store = _store(redis_url)
    store.observe("withdraw", "card1", "tx00000001", Decimal("1.00"), T0 - 10)
    store.observe("withdraw", "card1", "tx00000001", Decimal("900.00"), T0 - 5)
    v = store.observe("withdraw", "card1", "tx00000002", Decimal("2.00"), T0)
    assert v.counts["1h"] == 1 and v.amounts["1h"] == Decimal("1.00")


def test_approved_and_pending_tallies_follow_the_marks(redis_url: str) -> None:
    """Attempts count everything; approved and pending count what was marked so, and an end (rejected,
    failed, expired) takes a transaction out of both. Committed is approved plus pending."""
    store = _store(redis_url)
    for i, amount in enumerate(("100.00", "200.00", "400.00"), 1):
        store.observe("withdraw", "card1", f"tx-0000000{i}", Decimal(amount), T0 - 60 * i)
    store.mark("withdraw", "card1", "tx00000001", Decimal("100.00"), T0 - 60, "approved")
    store.mark("withdraw", "card1", "tx00000002", Decimal("200.00"), T0 - 120, "pending")
    store.mark("withdraw", "card1", "tx00000003", Decimal("400.00"), T0 - 180, "pending")
    store.mark("withdraw", "card1", "tx00000003", Decimal("400.00"), T0 - 180, "ended")  # rejected
    v = store.observe("withdraw", "card1", "tx00000009", Decimal("1.00"), T0)
    assert v.counts["24h"] == 3 and v.amounts["24h"] == Decimal("700.00")
    assert v.approved is not None and v.approved.amounts["24h"] == Decimal("100.00")
    assert v.pending is not None and v.pending.counts["24h"] == 1 and v.pending.amounts["1h"] == Decimal("200.00")
    committed = v.tally("committed")
    assert committed is not None and committed.amounts["24h"] == Decimal("300.00")
    store.mark("withdraw", "card1", "tx00000002", Decimal("200.00"), T0 - 120, "approved")
    again = store.observe("withdraw", "card1", "tx00000009", Decimal("1.00"), T0)
    assert again.approved is not None and again.approved.amounts["24h"] == Decimal("300.00")
    assert again.pending is not None and again.pending.counts["24h"] == 0


def test_marks_are_idempotent_and_never_count_the_transaction_itself(redis_url: str) -> None:
    """The same mark twice counts once; a transaction's own mark is not in its own figures."""
    store = _store(redis_url)
    store.observe("deposit", "card1", "tx00000001", Decimal("50.00"), T0 - 10)
    for _ in range(2):
        store.mark("deposit", "card1", "tx00000001", Decimal("50.00"), T0 - 10, "approved")
    own = store.observe("deposit", "card1", "tx00000001", Decimal("50.00"), T0 - 10)
    assert own.approved is not None and own.approved.counts["24h"] == 0
    other = store.observe("deposit", "card1", "tx00000002", Decimal("5.00"), T0)
    assert other.approved is not None and other.approved.counts["1h"] == 1
