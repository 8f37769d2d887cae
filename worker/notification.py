"""The VIP Connect notification on the wire, parsed leniently.

VIP Connect's own examples mix PascalCase and camelCase keys and send numbers
and booleans as JSON values or as strings, so keys are matched without regard
to case or underscores, ``"89.76"`` and ``89.76`` are both ``Decimal('89.76')``,
``"true"`` is ``True``, and fields beyond the documented ones are kept.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from worker.errors import NotificationError
from worker.wording import validation_problem

Kind = Literal["deposit", "withdraw", "error"]
KINDS: tuple[Kind, ...] = ("deposit", "withdraw", "error")


def _fold(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


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
        fields = {_fold(name): name for name in cls.model_fields}
        out: dict[str, Any] = {}
        for key, value in data.items():
            name: str = fields.get(_fold(str(key)), str(key))
            if value == "" and name in cls.model_fields:
                value = None  # VIP sends "Timestamp": "" for "no value"
            out[name] = value
        return out


class OperatorLimits(_Lenient):
    """The operator's limits as VIP Connect repeats them in a deposit notification."""

    min_deposit: Decimal | None = None
    max_deposit: Decimal | None = None
    remaining_daily_deposit: Decimal | None = None
    min_withdraw: Decimal | None = None
    max_withdraw: Decimal | None = None
    wallet_balance: Decimal | None = None


class Notification(_Lenient):
    """One deposit, withdraw or error notification; extra fields are kept as they came."""

    transaction_id: str = Field(min_length=8, max_length=25)
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


def decode_body(raw: bytes) -> Any:
    """JSON with every non-integer number as Decimal; NotificationError('body', ...) when not JSON."""
    try:
        return json.loads(raw, parse_float=Decimal)
    except (ValueError, InvalidOperation):
        raise NotificationError("body", "is not valid JSON") from None


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
