"""Building rule facts from a notification and what enrichment found."""

from __future__ import annotations

import json
from decimal import Decimal

from rules.catalogue import blank_facts
from tests.conftest import FIXTURES
from worker.config import LimitsSettings
from worker.facts import Enrichment, build_facts, facts_for_record, facts_from_record
from worker.notification import Notification, parse_notification
from worker.store.velocity import Velocity
from worker.vip.models import AccountInquiry


def _note() -> Notification:
    body = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text(),
                      parse_float=Decimal)
    body.update(maskedBankAccountNumber="**1111", bankRoutingNumber="22222222", patronId="P1")
    return parse_notification(body, "withdraw")


def _paths(d: dict[str, object], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in d.items():
        out |= _paths(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


def test_facts_have_exactly_the_catalogued_paths() -> None:
    """Every catalogued path is present, and nothing else, even with nothing enriched."""
    assert _paths(build_facts(_note(), Enrichment(), LimitsSettings())) == _paths(blank_facts())


def test_matching_bank_and_effective_limits_are_filled() -> None:
    """The bank entry matching the notification's account is used; limits fall back to the settings."""
    inquiry = AccountInquiry.from_response(json.loads(
        (FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text()))
    velocity = Velocity({"1h": 1, "24h": 2}, {"1h": Decimal("5"), "24h": Decimal("7.5")})
    facts = build_facts(_note(), Enrichment(inquiry, Decimal("100.00"), velocity), LimitsSettings())
    assert facts["bank"] == {"found": True, "instant_payment_eligible": True, "available_amount": None}
    assert facts["limits"]["max_withdraw"] == Decimal("999999.99")
    assert facts["amount"] == Decimal("10.33") and facts["velocity"]["amount_24h"] == Decimal("7.5")


def test_stored_facts_keep_money_exact() -> None:
    """Facts stored on the record have money as strings and come back as the same Decimals."""
    facts = build_facts(_note(), Enrichment(wallet_balance=Decimal("0.10")), LimitsSettings())
    stored = json.loads(json.dumps(facts_for_record(facts)))
    assert stored["wallet"]["balance"] == "0.10"
    assert facts_from_record(stored) == facts


def test_velocity_facts_by_kind() -> None:
    """Attempts, approved, pending and committed (approved + pending) each get a count and a sum per
    window; the attempts keep their first names too."""
    from worker.store.velocity import Tally

    windows = ("1h", "24h", "7d")
    velocity = Velocity({w: 3 for w in windows}, {w: Decimal("300") for w in windows},
                        approved=Tally({w: 1 for w in windows}, {w: Decimal("100.00") for w in windows}),
                        pending=Tally({w: 1 for w in windows}, {w: Decimal("50.50") for w in windows}))
    facts = build_facts(_note(), Enrichment(velocity=velocity), LimitsSettings())["velocity"]
    assert facts["attempts"]["count_24h"] == 3 == facts["count_24h"]
    assert facts["approved"]["amount_7d"] == Decimal("100.00")
    assert facts["pending"]["count_1h"] == 1
    assert facts["committed"] == {**{f"count_{w}": 2 for w in windows},
                                  **{f"amount_{w}": Decimal("150.50") for w in windows}}
