"""The simulator's labels CSV: plausible labels drawn from what the ledger recorded, the same for the same
seed, importable as it is."""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal

from producers.sim.labels import draw_label, write_labels
from worker.labels.parse import parse_csv
from worker.labels.store import LabelStore
from worker.ledger import Ledger, TransactionRecord
from worker.ledger.states import State


def shares(state: str, kind: str, amount: str, facts: dict[str, object], n: int = 20_000) -> Counter[str]:
    rng = random.Random(1)
    return Counter(str((draw_label(rng, state, kind, Decimal(amount), facts) or ("none",))[0]) for _ in range(n))


def test_approved_deposits_are_mostly_good_with_some_returned_r01() -> None:
    """Of approved deposits a few per cent come back, R01 most often, then the unauthorized returns."""
    drawn = shares("approved", "deposit", "500.00", {})
    assert 0.97 < drawn["confirmed_good"] / 20_000 < 0.985
    assert drawn["R01"] > drawn["R10"] > 0 and drawn["chargeback"] > 0


def test_instant_withdrawals_are_never_returned_and_unsettled_ones_unlabelled() -> None:
    """An INP withdrawal gets no ACH return; a transaction still frozen gets no label yet."""
    drawn = shares("approved", "withdraw", "100.00", {"fund_transfer_type": "INP"})
    assert not any(label.startswith("R") for label in drawn)
    assert draw_label(random.Random(1), "frozen", "withdraw", Decimal("1.00"), {}) is None


def test_a_patron_not_in_good_standing_is_often_confirmed_fraud() -> None:
    """Rejected for standing: about half confirmed fraud; an ordinary reject: a few per cent."""
    bad = shares("rejected", "withdraw", "100.00", {"account": {"is_in_good_standing": False}})
    ordinary = shares("rejected", "deposit", "100.00", {"account": {"is_in_good_standing": True}})
    assert 0.45 < bad["confirmed_fraud"] / 20_000 < 0.55
    assert ordinary["confirmed_fraud"] / 20_000 < 0.05


def test_the_same_seed_writes_the_same_file_and_it_imports(sqlite_url: str) -> None:
    """One seed, one file; another seed, another; the file imports whole into the same ledger."""
    with Ledger.open(sqlite_url) as led:
        for i in range(300):
            led.write(None, TransactionRecord(transaction_id=f"tx{i:06d}", transaction_type="deposit",
                                              amount="900.00", state=State.APPROVED))
        led.write(None, TransactionRecord(transaction_id="txinflight", state=State.FROZEN))
        first, counts = write_labels(led.engine, seed=3)
        assert write_labels(led.engine, seed=3)[0] == first != write_labels(led.engine, seed=4)[0]
        assert sum(counts.values()) == 300 and "txinflight" not in first
        rows = parse_csv(first.encode(), "sim.csv")
        assert LabelStore(led.engine).record(rows, actor="test", source="csv", sha256="0" * 64).recorded == 300
