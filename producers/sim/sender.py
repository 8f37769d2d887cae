"""Send realistic VIP Connect notifications to an ingestor, as VIP Connect would.

The bodies vary the way VIP's own examples do: PascalCase or camelCase keys,
numbers and booleans as JSON values or as strings. They have VIP's documented
shapes: a withdrawal names the VIP card but carries no PatronId (the worker finds
the patron); ``rich`` adds the PatronId to withdrawals too (``vipflow sim --send N
--rich``). Who sends what, and how
often, is ``producers.sim.traffic``: mostly the simulator's crowd of ordinary
patrons, a few special cases, in the same proportions every run. Each request
carries a JWT bearer token signed with the callback key. :func:`send_one` sends
one body given as it is (``vipflow sim --send --file``), signed the same way.
"""

from __future__ import annotations

import random
import string
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import requests

from producers.sim.patrons import PATRONS, SimPatron, find
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
    no_answer: str | None = None  # why the first notification that got no answer (status 0) got none

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
    rich: bool = False,
) -> dict[str, Any]:
    """One deposit or withdraw notification for ``patron`` in VIP Connect's documented shape (a withdrawal
    without PatronId; ``rich``: with it); ``location`` is the patron's IP address (default: one drawn from
    a documentation range, 198.51.100.0/24)."""
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
        if not rich:
            del body["PatronId"]  # VIP's Handle Withdrawals page shows none: the worker finds the patron
    if not pascal:
        body = {
            _camel(k): ({_camel(a): b for a, b in v.items()} if isinstance(v, dict) else v) for k, v in body.items()
        }
    return body


def _build(scenario: Scenario, drawn: Draw, rng: random.Random, rich: bool = False) -> tuple[str, dict[str, Any]]:
    return scenario.kind, build_notification(
        drawn.patron, scenario.kind, drawn.amount, fund_transfer_type=drawn.fund_transfer_type,
        bank_index=drawn.bank_index, pascal=rng.random() < 0.5, as_strings=rng.random() < 0.5, rng=rng, rich=rich)


def notification_mix(rng: random.Random, count: int, kinds: Sequence[str] = ("deposit", "withdraw"),
                     rich: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """``count`` (kind, body) in the traffic mix (``producers.sim.traffic``), the same proportions every run;
    withdrawals without PatronId unless ``rich``."""
    return [_build(scenario, drawn, rng, rich) for scenario, drawn in deal(rng, count, kinds)]


def random_notification(rng: random.Random, kinds: Sequence[str], rich: bool = False) -> tuple[str, dict[str, Any]]:
    """One (kind, body) of a traffic scenario drawn by weight (a withdrawal without PatronId unless ``rich``)."""
    return _build(*draw_one(rng, kinds), rng, rich)


def notification_for_session(session: Mapping[str, Any], rng: random.Random) -> tuple[str, dict[str, Any]]:
    """The notification VIP would send after a patron session (an entry of the simulator's
    ``/sim/sessions``): its transaction id, type, amount, card and patron. Withdrawals carry no
    PatronId, as VIP documents them; the worker finds the patron through the session."""
    kind = str(session["transactionType"])
    card = session.get("vipCardNumber")
    patron = find(str(card or "")) or PATRONS[0]
    patron = replace(patron, patron_id=str(session["patronId"]), vip_card_number=str(card or patron.vip_card_number))
    return kind, build_notification(patron, kind, Decimal(str(session["amount"])),
                                    transaction_id=str(session["transactionId"]), pascal=rng.random() < 0.5,
                                    as_strings=rng.random() < 0.5, rng=rng)
@dataclass(frozen=True)
class Answer:
    """The ingestor's answer to one notification: HTTP status (0: none) and body (or why there was none)."""

    url: str
    status: int
    body: str


def kind_of(body: Mapping[str, Any]) -> str | None:
    """The body's TransactionType (any key casing) folded to ``deposit``/``withdraw``; None when absent."""
    for key, value in body.items():
        if key.lower() == "transactiontype" and isinstance(value, str):
            return value.strip().lower() or None
    return None


def send_one(target: str, path: str, body: bytes, *, key: bytes, issuer: str, audience: str,
             timeout_s: float = 10.0) -> Answer:
    """POST ``body`` (bytes, sent exactly as given) to ``target + path`` with a bearer token signed as
    :func:`send_notifications` signs; the answer, status 0 with the reason when none came."""
    url = target.rstrip("/") + path
    token = TokenCache(key, issuer, audience, 600).token()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        answer = requests.post(url, data=body, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        from worker.errors import reason

        return Answer(url, 0, reason(exc))
    return Answer(url, answer.status_code, answer.text)


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
    sessions: Sequence[Mapping[str, Any]] | None = None,
    rich: bool = False,
) -> SendReport:
    """POST ``count`` notifications to ``target`` at about ``rate`` per second; count the answers.
    With ``sessions`` (the simulator's ``/sim/sessions``), one notification for each of the first
    ``count`` sessions instead of random ones. Withdrawals carry no PatronId, as VIP documents them, unless
    ``rich``."""
    rng = random.Random(seed)
    if sessions is not None:
        notes = [notification_for_session(s, rng) for s in list(sessions)[:count]]
    else:
        notes = notification_mix(rng, count, kinds, rich)
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
        except requests.RequestException as exc:
            from worker.errors import reason

            status = 0
            with lock:
                report.no_answer = report.no_answer or reason(exc)
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
