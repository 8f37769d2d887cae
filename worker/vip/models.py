"""What the VIP Connect API answers, as the worker keeps it.

Parsed leniently (keys matched without regard to case or underscores, numbers
and booleans accepted as strings) because VIP Connect's own examples mix both.
Unknown fields are dropped on purpose: the account inquiry carries the patron's
name, address, date of birth, SSN digits, phones and email, none of which the
worker needs or may keep.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def fold(key: str) -> str:
    """A key as matched on the wire: lower case, without underscores or dashes."""
    return key.replace("_", "").replace("-", "").lower()


def jsonable(value: Any) -> Any:
    """``value`` with every Decimal as a string, ready for ``json.dumps`` without rounding."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def field(data: Any, name: str) -> Any:
    """The value of ``name`` in a wire mapping, whatever its casing; None when absent."""
    if not isinstance(data, dict):
        return None
    want = fold(name)
    for key, value in data.items():
        if fold(str(key)) == want:
            return value
    return None


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _fold_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        names = {fold(name): name for name in cls.model_fields}
        out: dict[str, Any] = {}
        for key, value in data.items():
            name = names.get(fold(str(key)))
            if name is not None:
                out[name] = None if value == "" else value
        return out


class BankAccount(_Wire):
    """One of the patron's bank accounts as the account inquiry lists it (already masked)."""

    masked_account_number: str | None = None
    routing_number: str | None = None
    bank_name: str | None = None
    available_amount: Decimal | None = None  # VIP Online: limits per bank account
    available_limit: Decimal | None = None
    instant_payment_eligible: bool | None = None

    def matches(self, masked_number: str | None, routing_number: str | None) -> bool:
        """True when this is the account a notification names (same routing, same last 4 digits)."""
        if not masked_number or not self.masked_account_number:
            return False
        if routing_number and self.routing_number and routing_number != self.routing_number:
            return False
        return masked_number[-4:] == self.masked_account_number[-4:]


class AccountInquiry(_Wire):
    """The account inquiry's answer minus personal data; ``found`` False for an unknown card."""

    found: bool = True
    is_in_good_standing: bool | None = None
    available_amount: Decimal | None = None  # VIP Preferred only
    limit_amount: Decimal | None = None
    one_click_discount_eligible: bool | None = None
    bank_accounts: tuple[BankAccount, ...] = ()

    @classmethod
    def not_found(cls) -> AccountInquiry:
        """The inquiry of a card VIP Connect does not know."""
        return cls(found=False)

    @classmethod
    def from_response(cls, body: dict[str, Any]) -> AccountInquiry:
        """Parse VIP Connect's 200 body; personal fields are not kept."""
        return cls.model_validate({**body, "found": True})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccountInquiry:
        """Rebuild from :meth:`to_dict` (the worker's cache)."""
        return cls.model_validate(data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, Decimals as strings."""
        out: dict[str, Any] = jsonable(self.model_dump())
        return out

    def bank_account(
        self, masked_number: str | None, routing_number: str | None
    ) -> BankAccount | None:
        """The bank entry matching a notification's masked account and routing number, if listed."""
        for bank in self.bank_accounts:
            if bank.matches(masked_number, routing_number):
                return bank
        return None


class TransactionStatus(_Wire):
    """One transaction as the transaction lookup reports it; ``raw`` is the entry, masked."""

    transaction_id: str
    approval_completed: bool | None = None
    requires_approval: bool | None = None
    transaction_status: str | None = None
    raw: dict[str, Any] = {}

    @property
    def approved(self) -> bool:
        """True when VIP Connect says the approval already completed."""
        status = (self.transaction_status or "").upper()
        return bool(self.approval_completed) or status == "COMPLETE"


class ApprovalResult(_Wire):
    """A successful approval call's answer."""

    transaction_id: str
    transaction_result: str
    raw: dict[str, Any] = {}
