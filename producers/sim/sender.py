"""Send realistic VIP Connect notifications to an ingestor, as VIP Connect would.

The bodies vary the way VIP's own examples do: PascalCase or camelCase keys,
numbers and booleans as JSON values or as strings. Who sends what, and how
often, is ``producers.sim.traffic``: mostly the simulator's crowd of ordinary
patrons, a few special cases, in the same proportions every run. Each request
carries a JWT bearer token signed with the callback key.
"""

from __future__ import annotations

import random
import string
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import requests

from producers.sim.patrons import SimPatron
from producers.sim.traffic import Draw, Scenario, deal, draw_one
from producers.sim.wire import dumps
from worker.tokens import TokenCache

DEFAULT_PATHS = {"deposit": "/vip/notify/deposit", "withdraw": "/vip/notify/withdraw"}


@dataclass
class SendReport:
    """What a sending run did: HTTP statuses counted (0 = no answer), and the ids sent."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    transaction_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        """Notifications acknowledged with 200."""
        return self.statuses[200]

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the command's output."""
        return {
            "sent": self.sent,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "elapsed_s": round(self.elapsed_s, 3),
            "rate": round(self.sent / self.elapsed_s, 1) if self.elapsed_s else None,
        }


def _camel(key: str) -> str:
    return key[0].lower() + key[1:]


def build_notification(
    patron: SimPatron,
    kind: str,
    amount: Decimal,
    *,
    transaction_id: str | None = None,
    fund_transfer_type: str = "ACH",
    bank_index: int = 0,
    pascal: bool = True,
    as_strings: bool = True,
    rng: random.Random | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    """One deposit or withdraw notification for ``patron`` in VIP Connect's shape; ``location`` is the
    patron's IP address (default: one drawn from a documentation range, 198.51.100.0/24)."""
    rng = rng or random.Random()
    bank = patron.banks[bank_index % len(patron.banks)]
    txid = transaction_id or "sim" + "".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(8, 20)))

    def value(v: Any) -> Any:
        if as_strings and isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, Decimal):
            return str(v) if as_strings else v
        return v

    body: dict[str, Any] = {
        "PatronId": patron.patron_id,
        "TransactionId": txid,
        "Amount": value(amount),
        "BankName": bank.bank_name,
        "MaskedBankAccountNumber": "********" + bank.masked_account_number[-4:],
        "BankRoutingNumber": bank.routing_number,
        "VipCardNumber": patron.vip_card_number,
        "FirstName": patron.first_name.title(),
        "LastName": patron.last_name.title(),
        "HomePhoneNumber": patron.phone,
        "Location": location or f"198.51.100.{rng.randint(1, 254)}",
        "TransactionType": kind,
        "Timestamp": datetime.now(UTC).isoformat(),
        "InstantPaymentEligible": value(bank.instant_payment_eligible),
        "ProductType": patron.product_type,
    }
    if kind == "deposit":
        body["OneClickDiscountApplied"] = value(False)
        body["OperatorLimits"] = {
            "MinDeposit": value(Decimal("10.00")),
            "MaxDeposit": value(Decimal("99999.99")),
            "RemainingDailyDeposit": value(Decimal("1000.0")),
            "MinWithdraw": value(Decimal("10.00")),
            "MaxWithdraw": value(Decimal("999999.99")),
            "WalletBalance": value(patron.wallet_balance),
        }
    else:
        body["FundTransferType"] = fund_transfer_type
    if not pascal:
        body = {
            _camel(k): ({_camel(a): b for a, b in v.items()} if isinstance(v, dict) else v) for k, v in body.items()
        }
    return body


def _build(scenario: Scenario, drawn: Draw, rng: random.Random) -> tuple[str, dict[str, Any]]:
    return scenario.kind, build_notification(
        drawn.patron, scenario.kind, drawn.amount, fund_transfer_type=drawn.fund_transfer_type,
        bank_index=drawn.bank_index, pascal=rng.random() < 0.5, as_strings=rng.random() < 0.5, rng=rng)


def notification_mix(rng: random.Random, count: int,
                     kinds: Sequence[str] = ("deposit", "withdraw")) -> list[tuple[str, dict[str, Any]]]:
    """``count`` (kind, body) in the traffic mix (``producers.sim.traffic``), the same proportions every run."""
    return [_build(scenario, drawn, rng) for scenario, drawn in deal(rng, count, kinds)]


def random_notification(rng: random.Random, kinds: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """One (kind, body) of a traffic scenario drawn by weight."""
    return _build(*draw_one(rng, kinds), rng)


def send_notifications(
    target: str,
    *,
    count: int,
    rate: float,
    key: bytes,
    issuer: str,
    audience: str,
    kinds: Sequence[str] = ("deposit", "withdraw"),
    seed: int | None = None,
    paths: Mapping[str, str] = DEFAULT_PATHS,
    workers: int = 8,
    timeout_s: float = 10.0,
) -> SendReport:
    """POST ``count`` notifications to ``target`` at about ``rate`` per second; count the answers."""
    rng = random.Random(seed)
    notes = notification_mix(rng, count, kinds)
    tokens = TokenCache(key, issuer, audience, 600)
    report = SendReport(
        transaction_ids=[n["TransactionId" if "TransactionId" in n else "transactionId"] for _, n in notes]
    )
    lock = threading.Lock()
    local = threading.local()
    base = target.rstrip("/")

    def post(kind: str, note: dict[str, Any]) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        try:
            headers = {"Authorization": f"Bearer {tokens.token()}", "Content-Type": "application/json"}
            status = session.post(base + paths[kind], data=dumps(note), timeout=timeout_s, headers=headers).status_code
        except requests.RequestException:
            status = 0
        with lock:
            report.sent += 1
            report.statuses[status] += 1

    futures: list[Future[None]] = []
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, (kind, note) in enumerate(notes):
            due = start + i / rate if rate > 0 else start
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            futures.append(pool.submit(post, kind, note))
    for future in futures:
        future.result()  # a bug in post() must not pass as a quiet undercount
    report.elapsed_s = time.monotonic() - start
    return report
