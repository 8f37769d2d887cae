"""The simulator's seeded patrons. Tests and the default rules rely on these exact values.

=================  ==========  ==========  =========  ========================================
name               card        patron_id   product    what it is for
=================  ==========  ==========  =========  ========================================
PREFERRED_GOOD     7210695258  1000000001  preferred  in good standing, availableAmount 4500
PREFERRED_BAD      7210600002  1000000002  preferred  NOT in good standing (availableAmount 0)
ONLINE             7210600003  1000000003  online     bank ****4321 instant-eligible (348.31),
                                                      bank **1111 not eligible (4500.00)
LOW                7210600004  1000000004  preferred  good standing, availableAmount 25.00
UNKNOWN_CARD       7210699999  -           -          accountlookup answers 404
crowd_patron(i)    72108iiiii  2iiiiiiiii  preferred  i < 10,000: PREFERRED_GOOD's twin, its own card
=================  ==========  ==========  =========  ========================================

Wallet balances: 10000.00, 500.00, 2500.00, 20.00 (and 10000.00 for each crowd
patron). The crowd lets benchmarks spread traffic over many cards, as real
traffic is: velocity windows and the account cache then behave as they would in
production rather than piling every transaction on one card. The personal data
below is invented, and exists only so the inquiry answers have VIP's real shape.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class SimBank:
    """One bank account of a seeded patron, as VIP lists it (already masked)."""

    masked_account_number: str
    routing_number: str
    bank_name: str
    instant_payment_eligible: bool
    available_amount: Decimal | None = None  # VIP Online: limits per bank
    available_limit: Decimal | None = None  # VIP Preferred lists availableLimit instead


@dataclass(frozen=True)
class SimPatron:
    """A seeded patron: VIP account, operator-side patron id and wallet balance."""

    name: str
    vip_card_number: str
    patron_id: str
    product_type: str
    is_in_good_standing: bool
    available_amount: Decimal | None
    limit_amount: Decimal
    wallet_balance: Decimal
    banks: tuple[SimBank, ...]
    first_name: str
    last_name: str
    phone: str
    id_number: str


_PREFERRED_BANKS = (
    SimBank("****9999", "011401533", "Jpmorgan Chase Bank, Na", False, available_limit=Decimal("0.00")),
    SimBank("**1111", "22222222", "Bank Of America, Na", True, available_limit=Decimal("0.00")),
)

PREFERRED_GOOD = SimPatron(
    "PREFERRED_GOOD",
    "7210695258",
    "1000000001",
    "preferred",
    True,
    Decimal("4500.0"),
    Decimal("4500.0"),
    Decimal("10000.00"),
    _PREFERRED_BANKS,
    "JOHN",
    "SMITH",
    "8434811326",
    "543083545",
)
PREFERRED_BAD = SimPatron(
    "PREFERRED_BAD",
    "7210600002",
    "1000000002",
    "preferred",
    False,
    Decimal("0.0"),
    Decimal("1000.0"),
    Decimal("500.00"),
    _PREFERRED_BANKS[:1],
    "MARY",
    "JONES",
    "4045550102",
    "543080002",
)
ONLINE = SimPatron(
    "ONLINE",
    "7210600003",
    "1000000003",
    "online",
    True,
    None,
    Decimal("4500.0"),
    Decimal("2500.00"),
    (
        SimBank("****4321", "021000021", "Jpmorgan Chase Bank, Na", True, available_amount=Decimal("348.31")),
        SimBank("**1111", "22222222", "Bank Of America, Na", False, available_amount=Decimal("4500.00")),
    ),
    "ALEX",
    "BROWN",
    "5135550103",
    "543080003",
)
LOW = SimPatron(
    "LOW",
    "7210600004",
    "1000000004",
    "preferred",
    True,
    Decimal("25.00"),
    Decimal("25.00"),
    Decimal("20.00"),
    _PREFERRED_BANKS[:1],
    "SAM",
    "TAYLOR",
    "6785550104",
    "543080004",
)
UNKNOWN_CARD = "7210699999"

PATRONS: tuple[SimPatron, ...] = (PREFERRED_GOOD, PREFERRED_BAD, ONLINE, LOW)
BY_CARD = {p.vip_card_number: p for p in PATRONS}
CROWD_SIZE = 10_000
_CROWD_PREFIX = "72108"


def crowd_patron(i: int) -> SimPatron:
    """The ``i``-th generated patron (0 <= i < CROWD_SIZE): PREFERRED_GOOD's twin with its own card."""
    if not 0 <= i < CROWD_SIZE:
        raise ValueError(f"crowd patron {i} out of range 0..{CROWD_SIZE - 1}")
    return replace(PREFERRED_GOOD, name=f"CROWD_{i}", vip_card_number=f"{_CROWD_PREFIX}{i:05d}",
                   patron_id=f"2{i:09d}", id_number=f"6{i:08d}")


def find(vip_card_number: str) -> SimPatron | None:
    """The seeded or crowd patron with this card, or None (VIP answers 404)."""
    patron = BY_CARD.get(vip_card_number)
    tail = vip_card_number[len(_CROWD_PREFIX):]
    if patron is None and vip_card_number.startswith(_CROWD_PREFIX) and len(tail) == 5 and tail.isdigit():
        return crowd_patron(int(tail))
    return patron


def wallet_balances() -> dict[str, Decimal]:
    """Every simulated patron's starting wallet balance, by patron id (the crowd included)."""
    out = {p.patron_id: p.wallet_balance for p in PATRONS}
    out.update((f"2{i:09d}", PREFERRED_GOOD.wallet_balance) for i in range(CROWD_SIZE))
    return out


def inquiry_response(patron: SimPatron) -> dict[str, Any]:
    """The account inquiry's 200 body for ``patron``, in VIP Connect's shape (Decimals kept)."""
    banks = []
    for b in patron.banks:
        entry: dict[str, Any] = {
            "maskedAccountNumber": b.masked_account_number,
            "routingNumber": b.routing_number,
            "bankName": b.bank_name,
        }
        if b.available_amount is not None:
            entry["availableAmount"] = b.available_amount
        if b.available_limit is not None:
            entry["availableLimit"] = b.available_limit
        entry["instantPaymentEligible"] = b.instant_payment_eligible
        banks.append(entry)
    body: dict[str, Any] = {
        "memberSince": "2022-08-01T00:00:00+00:00",
        "lastTransaction": "0001-01-01T00:00:00+00:00",
        "mostRecentTransactionAmount": Decimal("0.0"),
        "dateOfBirth": "09101997",
        "last4SSN": patron.id_number[-4:],
        "incrementalLimitAmount": Decimal("0.0"),
        "maxLimitAmount": Decimal("0.0"),
        "vipCardNumber": patron.vip_card_number,
        "idNumber": "****" + patron.id_number[-4:],
        "idType": "DL",
        "idState": "GA",
        "firstName": patron.first_name,
        "lastName": patron.last_name,
        "name": f"{patron.first_name} {patron.last_name}",
        "address": "28 NQQODHNDV",
        "city": "PRZYFAYQA",
        "state": "TN",
        "zip": "28292",
        "homePhoneNumber": patron.phone,
        "mobilePhoneNumber": patron.phone,
        "email": "8ZN2EMYP@5JP6OEAZ.COM",
        "limitAmount": patron.limit_amount,
    }
    if patron.available_amount is not None:
        body["availableAmount"] = patron.available_amount
    body.update(
        {"isInGoodStanding": patron.is_in_good_standing, "oneClickDiscountEligible": False, "bankAccounts": banks}
    )
    return body
