"""The simulator's outcome labels: a plausible labels CSV for the transactions a ledger holds.

What happened after each decision is drawn, seeded per transaction (the same seed and ledger give the
same file, whatever order the rows come in), from what the ledger recorded:

- approved deposits (an ACH debit of the patron's bank): returned R01 Insufficient Funds (about 1.5 %,
  more for larger amounts), R10/R11/R07 unauthorized (0.6 % together), R02/R03 (0.3 %), a chargeback
  (0.3 %); approved ACH/SDA withdrawals (a credit to the patron's bank): returned R02/R03/R04/R16
  (about 1 %), confirmed fraud (0.3 %: a taken-over account cashing out); instant payments are never
  returned. The rest confirmed good.
- rejected and reviewed ones (no money moved): confirmed fraud more often where the facts point that
  way (a patron VIP says is not in good standing 50 %, a card VIP does not know 30 %, a withdrawal
  above the wallet balance 15 %, a large one 8 %, others 3 %); the rest confirmed good.
- transactions not settled (failed, expired, in flight): no label yet.

Each label is dated after the transaction as the Rules allow (an R01 within two banking days, an
unauthorized return up to 60 days, a chargeback 30 to 90), never after today.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from worker.ledger import tables as t

HEADER = ("transaction_id", "label", "date")


def _facts(text: Any) -> dict[str, Any]:
    value = json.loads(text) if isinstance(text, str) else text
    return value if isinstance(value, dict) else {}


def _fact(facts: dict[str, Any], path: str) -> Any:
    node: Any = facts
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def draw_label(rng: random.Random, state: str, kind: str | None, amount: Decimal,
               facts: dict[str, Any]) -> tuple[str, int] | None:
    """(label, days after the transaction) for one transaction, or None (not settled: no label yet)."""
    transfer = str(_fact(facts, "fund_transfer_type") or "ACH").upper()
    if state == "approved":
        roll = rng.random()
        if kind == "deposit":
            r01 = 0.01 + 0.015 * float(min(amount / 1000, Decimal(1)))
            for label, share, days in (("R01", r01, (1, 2)), ("R10", 0.004, (5, 59)), ("R11", 0.001, (5, 59)),
                                       ("R07", 0.001, (5, 59)), ("R02", 0.002, (1, 2)), ("R03", 0.001, (1, 2)),
                                       ("chargeback", 0.003, (30, 90))):
                if roll < share:
                    return label, rng.randint(*days)
                roll -= share
            return "confirmed_good", 60
        if transfer != "INP":
            for label, share, days in (("R02", 0.004, (1, 2)), ("R03", 0.003, (1, 2)), ("R04", 0.002, (1, 2)),
                                       ("R16", 0.001, (1, 2)), ("confirmed_fraud", 0.003, (3, 45))):
                if roll < share:
                    return label, rng.randint(*days)
                roll -= share
        elif roll < 0.003:
            return "confirmed_fraud", rng.randint(3, 45)
        return "confirmed_good", 60
    if state not in ("rejected", "review"):
        return None
    if _fact(facts, "account.is_in_good_standing") is False:
        fraud = 0.5
    elif _fact(facts, "account.found") is False:
        fraud = 0.3
    elif kind == "withdraw" and _fact(facts, "wallet.balance") is not None \
            and Decimal(str(_fact(facts, "wallet.balance"))) < amount:
        fraud = 0.15
    elif kind == "withdraw" and amount > 2500:
        fraud = 0.08
    else:
        fraud = 0.03
    return ("confirmed_fraud", rng.randint(3, 45)) if rng.random() < fraud else ("confirmed_good", 30)


def _transactions(engine: Engine, batch: int = 5000) -> Iterator[Any]:
    tx = t.transactions.c
    base = (select(tx.transaction_id, tx.state, tx.transaction_type, tx.amount, tx.created_at,
                   tx.record["facts"].as_string()).order_by(tx.transaction_id).limit(batch))
    after: str | None = None
    while True:
        with engine.connect() as conn:
            rows = list(conn.execute(base if after is None else base.where(tx.transaction_id > after)))
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1][0]


def write_labels(engine: Engine, seed: int = 0, today: date | None = None) -> tuple[str, Counter[str]]:
    """The labels CSV (with its header) for every settled transaction in the ledger on ``engine``, and
    how many of each label it holds."""
    today = today or datetime.now(UTC).date()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    counts: Counter[str] = Counter()
    for txid, state, kind, amount, created_at, facts in _transactions(engine):
        rng = random.Random(f"{seed}:{txid}")
        drawn = draw_label(rng, str(state), kind, Decimal(amount if amount is not None else 0), _facts(facts))
        if drawn is None:
            continue
        label, days = drawn
        when = min(datetime.fromtimestamp(float(created_at), UTC).date() + timedelta(days=days), today)
        writer.writerow((txid, label, when.isoformat()))
        counts[label] += 1
    return out.getvalue(), counts
