"""The VIP Connect notification on the wire: lenient in form, exact in content.

VIP Connect's own examples mix PascalCase and camelCase keys and send numbers
and booleans as JSON values or as strings, so keys are matched without regard
to case or underscores, ``"89.76"`` and ``89.76`` are both ``Decimal('89.76')``,
``"true"`` is ``True``, and fields beyond the documented ones are kept.

What the rules could not decide exactly is refused, naming the field: money that
is not a whole number of cents (or too large to compare exactly), identifiers
outside VIP's documented formats (``_FORMATS``), a patron id past
``PATRON_ID_MAX`` characters; the body itself is decoded by ``worker.jsonbody``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from rules.money import MoneyError, to_cents
from worker.errors import NotificationError
from worker.jsonbody import decode_body, fold
from worker.wording import validation_problem

Kind = Literal["deposit", "withdraw", "error"]
KINDS: tuple[Kind, ...] = ("deposit", "withdraw", "error")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _fold_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = {fold(name): name for name in cls.model_fields}
        out: dict[str, Any] = {}
        for key, value in data.items():
            name: str = fields.get(fold(str(key)), str(key))
            if value == "" and name in cls.model_fields:
                value = None  # VIP sends "Timestamp": "" for "no value"
            out[name] = value
        return out


def _exact(v: Decimal | None) -> Decimal | None:
    """Money the rules compare exactly (whole cents, at most 2**53 - 1 of them), else ValueError."""
    if v is not None:
        try:
            to_cents(v)
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
    return v


# Identifiers as VIP Connect documents and shows them (handle-deposits/withdrawals, account inquiry).
_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "transaction_id": (re.compile(r"[A-Za-z0-9]{8,25}"), "must be 8 to 25 letters or digits"),
    "vip_card_number": (re.compile(r"[0-9]{6,19}"), "must be 6 to 19 digits"),
    "bank_routing_number": (re.compile(r"[0-9]{8,9}"), "must be 8 or 9 digits"),
    "home_phone_number": (re.compile(r"[0-9]{10}"), "must be 10 digits, as VIP sends it"),
}
PATRON_ID_MAX = 64  # the operator's own ids (UUIDs with hyphens in VIP's samples): any text up to this


class OperatorLimits(_Lenient):
    """The operator's limits as VIP Connect repeats them in a deposit notification."""

    min_deposit: Decimal | None = None
    max_deposit: Decimal | None = None
    remaining_daily_deposit: Decimal | None = None
    min_withdraw: Decimal | None = None
    max_withdraw: Decimal | None = None
    wallet_balance: Decimal | None = None

    _money = field_validator("*")(_exact)


class Notification(_Lenient):
    """One deposit, withdraw or error notification; extra fields are kept as they came."""

    transaction_id: str
    transaction_type: str | None = None
    amount: Decimal | None = None
    patron_id: str | None = None
    vip_card_number: str | None = None
    bank_name: str | None = None
    masked_bank_account_number: str | None = None
    bank_routing_number: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    home_phone_number: str | None = None
    location: str | None = None
    timestamp: str | None = None
    instant_payment_eligible: bool | None = None
    product_type: str | None = None
    one_click_discount_applied: bool | None = None
    fund_transfer_type: str | None = None
    is_warrantied: bool | None = None
    operator_limits: OperatorLimits | None = None

    @field_validator("transaction_type", "product_type")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return v.strip().lower() if v is not None else None

    @field_validator("fund_transfer_type")
    @classmethod
    def _upper(cls, v: str | None) -> str | None:
        return v.strip().upper() if v is not None else None

    @field_validator("amount")
    @classmethod
    def _positive(cls, v: Decimal | None) -> Decimal | None:
        if v is not None and (not v.is_finite() or v <= 0):
            raise ValueError("must be a positive amount")
        return _exact(v)

    @field_validator(*_FORMATS)
    @classmethod
    def _format(cls, v: str | None, info: ValidationInfo) -> str | None:
        pattern, rule = _FORMATS[str(info.field_name)]
        if v is not None and not pattern.fullmatch(v):
            raise ValueError(rule)
        return v

    @field_validator("patron_id")
    @classmethod
    def _patron(cls, v: str | None) -> str | None:
        if v is not None and not 1 <= len(v) <= PATRON_ID_MAX:
            raise ValueError(f"must be 1 to {PATRON_ID_MAX} characters")
        return v

    def extras(self) -> dict[str, Any]:
        """Fields VIP Connect sent beyond the documented ones, under their original keys."""
        return dict(self.model_extra or {})


# Fields a deposit or withdraw notification cannot be decided without.
REQUIRED: dict[Kind, tuple[str, ...]] = {
    "deposit": ("amount", "vip_card_number"),
    "withdraw": ("amount", "vip_card_number"),
    "error": (),
}


def parse_notification(body: Any, kind: Kind) -> Notification:
    """Validate a decoded body for the route ``kind``; NotificationError names the first bad field."""
    if not isinstance(body, dict):
        raise NotificationError("body", "must be a JSON object")
    try:
        note = Notification.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(_camel(str(p)) for p in first["loc"]) or "body"
        raise NotificationError(field, validation_problem(first)) from None
    for name in REQUIRED[kind]:
        if getattr(note, name) is None:
            raise NotificationError(_camel(name), "is required")
    if kind != "error":
        if note.transaction_type is None:
            note = note.model_copy(update={"transaction_type": kind})
        elif note.transaction_type != kind:
            raise NotificationError(
                "transactionType", f"'{note.transaction_type}' does not match the {kind} route"
            )
    return note


__all__ = ["KINDS", "REQUIRED", "Kind", "Notification", "OperatorLimits", "decode_body", "parse_notification"]
