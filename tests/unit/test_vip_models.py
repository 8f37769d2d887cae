"""The VIP Connect models: lenient parsing, no personal data, exact Decimals, cache round trip."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from worker.vip.client import status_from_lookup
from worker.vip.models import AccountInquiry

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "vip-connect"


def _load(name: str) -> Any:
    return json.loads((FIX / name).read_text(), parse_float=Decimal)


def test_preferred_inquiry_parses_standing_and_amounts() -> None:
    """The VIP Preferred example gives good standing and availableAmount 4500 exactly."""
    inq = AccountInquiry.from_response(_load("account-inquiry-response-preferred.json"))
    assert inq.found and inq.is_in_good_standing is True
    assert inq.available_amount == Decimal("4500.0") and inq.limit_amount == Decimal("4500.0")
    assert [b.instant_payment_eligible for b in inq.bank_accounts] == [False, True]


def test_online_inquiry_has_bank_level_amounts() -> None:
    """The VIP Online example has no top-level availableAmount but one per bank account."""
    inq = AccountInquiry.from_response(_load("account-inquiry-response-online.json"))
    assert inq.available_amount is None
    assert inq.bank_accounts[0].available_amount == Decimal("348.31")


def test_personal_data_is_not_kept() -> None:
    """Names, address, birth date, SSN digits, phones and email do not survive parsing."""
    inq = AccountInquiry.from_response(_load("account-inquiry-response-preferred.json"))
    text = json.dumps(inq.to_dict())
    for secret in ("JOHN", "SMITH", "NQQODHNDV", "09101997", "3545", "8434811326", "5JP6OEAZ"):
        assert secret not in text


def test_strings_and_casing_are_accepted() -> None:
    """PascalCase keys and string-encoded booleans and numbers parse like their JSON forms."""
    inq = AccountInquiry.from_response(
        {"IsInGoodStanding": "false", "AvailableAmount": "12.50", "BankAccounts": []}
    )
    assert inq.is_in_good_standing is False and inq.available_amount == Decimal("12.50")


def test_cache_round_trip_is_exact() -> None:
    """to_dict is JSON-ready and from_dict gives back an equal inquiry."""
    inq = AccountInquiry.from_response(_load("account-inquiry-response-online.json"))
    again = AccountInquiry.from_dict(json.loads(json.dumps(inq.to_dict())))
    assert again == inq


def test_not_found_round_trips() -> None:
    """The not-found inquiry survives the cache as not found."""
    assert AccountInquiry.from_dict(AccountInquiry.not_found().to_dict()).found is False


def test_bank_account_matches_last4_and_routing() -> None:
    """A notification's masked account finds its bank entry by last 4 digits and routing number."""
    inq = AccountInquiry.from_response(_load("account-inquiry-response-online.json"))
    bank = inq.bank_account("************9999", "11111111")
    assert bank is not None and bank.bank_name == "Jpmorgan Chase Bank, Na"
    assert inq.bank_account("****9999", "99999999") is None


def test_lookup_picks_the_matching_entry() -> None:
    """A lookup array yields the entry whose transactionId matches, COMPLETE meaning approved."""
    payload = [
        {"transactionId": "other00001", "transactionStatus": "FAILED"},
        {
            "transactionId": "wanted0001",
            "transactionStatus": "COMPLETE",
            "approvalCompleted": "true",
        },
    ]
    found = status_from_lookup(payload, "wanted0001")
    assert found is not None and found.approved and found.approval_completed is True
    assert status_from_lookup(payload, "missing-001") is None
