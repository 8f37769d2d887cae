"""Opening patron sessions: the operator site's side of VIP Connect, before any notification.

The operator's backend says who the patron is and what the transaction is (:class:`SessionRequest`);
vipflow issues the transaction id (or checks the operator's own), reserves it in the ledger, asks VIP
Connect to open the session with the operator's JWT, and records VIP's answer: ``open`` with VIP's
session id, or ``refused`` with VIP's error body (never open). The answer (:class:`OpenedSession`)
carries the URL of VIP's web component to send the patron to.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from rules.errors import VipflowError
from worker.config import VipSettings
from worker.errors import VipRejectedError, VipTransientError
from worker.ledger.sessions import PatronSession, SessionStore
from worker.masking import mask_mapping
from worker.vip.models import field, jsonable
from worker.vip.protocol import PatronSessionApi

log = logging.getLogger("vipflow.sessions")

TRANSACTION_ID = re.compile(r"[A-Za-z0-9]{8,25}")  # VIP: operator-assigned, 8 to 25 characters
_CENTS = Decimal("0.01")
_TYPE_CODE = {"deposit": 0, "withdraw": 1}  # as the vendor's samples send transactionType
_PRODUCT_CODE = {"preferred": "0", "online": "1"}  # and productType
_ENROLLMENT_WIRE = {
    "first_name": "firstName", "last_name": "lastName", "email": "email", "phone": "phone",
    "address": "address", "city": "city", "state": "state", "zip": "zip",
    "id_type": "idType", "id_number": "idNumber", "id_state": "idState",
    "routing_number": "routingNumber", "account_number": "accountNumber",
}


def money(value: Decimal | str | None) -> str | None:
    """Money as vipflow prints it: two decimals (``"50.00"``); None stays None."""
    return None if value is None else str(Decimal(value).quantize(_CENTS))


# No control characters in any text: a NUL or line break in a name or URL is never meant, and PostgreSQL
# refuses NUL outright. A pattern rather than a validator, so the OpenAPI document says it too.
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$")]
# Where VIP sends the patron back: an absolute http(s) URL only (never javascript:, data: or a relative
# path). One pattern, the same in Python and in the OpenAPI document; the validator names the rule.
RETURN_URL = (r"^[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
              r"(?::[0-9]{1,5})?(?:[/?#][^\x00-\x20\x7f]*)?$")
_RETURN_URL = re.compile(RETURN_URL)
Money = Annotated[Decimal, Field(multiple_of=Decimal("0.01"), le=Decimal("9999999999.99"))]


class Enrollment(BaseModel):
    """What VIP needs of a patron enrolling (``patron_kind: new``); passed to VIP, never stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_name: Text | None = Field(None, max_length=100)
    last_name: Text | None = Field(None, max_length=100)
    email: Text | None = Field(None, max_length=200)
    phone: Text | None = Field(None, max_length=40)
    address: Text | None = Field(None, max_length=200)
    city: Text | None = Field(None, max_length=100)
    state: Text | None = Field(None, max_length=40)
    zip: Text | None = Field(None, max_length=20)
    id_type: Text | None = Field(None, max_length=40)
    id_number: Text | None = Field(None, max_length=60)
    id_state: Text | None = Field(None, max_length=40)
    routing_number: Text | None = Field(None, max_length=20)
    account_number: Text | None = Field(None, max_length=40)


class SessionRequest(BaseModel):
    """``POST /api/v1/sessions``: what the operator's backend knows of the patron and the transaction.

    Money in dollars with at most two decimals. ``transaction_id`` is issued by vipflow when absent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    patron_kind: Literal["existing", "new"] = "existing"
    patron_id: Text = Field(min_length=1, max_length=200)
    vip_card_number: Text | None = Field(None, min_length=1, max_length=64)
    date_of_birth: Text | None = Field(None, max_length=20, description="MM/DD/YYYY; passed to VIP, not stored")
    transaction_type: Literal["deposit", "withdraw"]
    amount: Money = Field(gt=0)
    wallet_balance: Money | None = Field(None, ge=0)
    remaining_daily_deposit: Money | None = Field(None, ge=0)
    product_type: Literal["preferred", "online"] = "preferred"
    return_url: str = Field(min_length=1, max_length=2000, json_schema_extra={"pattern": RETURN_URL},
                            description="where VIP sends the patron back: an absolute http:// or https:// URL")
    transaction_id: str | None = Field(None, description="8 to 25 letters or digits; issued when absent")
    native: bool = Field(False, description="the patron is in a native app's web view (VIP's native=true)")
    enrollment: Enrollment | None = None

    @field_validator("transaction_id")
    @classmethod
    def _txid(cls, value: str | None) -> str | None:
        if value is not None and not TRANSACTION_ID.fullmatch(value):
            raise ValueError("must be 8 to 25 letters or digits (VIP's rule for operator transaction ids)")
        return value

    @field_validator("return_url")
    @classmethod
    def _return_url(cls, value: str) -> str:
        if not _RETURN_URL.fullmatch(value):  # not .match: Python's $ also matches before a final newline
            raise ValueError("must be an absolute http:// or https:// URL (a host, then a path; no spaces)")
        return value

    @model_validator(mode="after")
    def _kind(self) -> SessionRequest:
        if self.patron_kind == "existing" and not self.vip_card_number:
            raise ValueError("vip_card_number is required for an existing patron (patron_kind new enrolls one)")
        return self


@dataclass(frozen=True)
class OpenedSession:
    """A session VIP opened: the transaction id, VIP's session id and where to send the patron."""

    transaction_id: str
    session_id: str
    web_component_url: str
    transaction_type: str
    amount: Decimal
    expires: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The API's JSON answer (money with two decimals)."""
        return {"transaction_id": self.transaction_id, "session_id": self.session_id,
                "web_component_url": self.web_component_url, "transaction_type": self.transaction_type,
                "amount": money(self.amount), "expires": self.expires}


class SessionRefused(VipflowError):
    """VIP refused to open the session (``status`` its 4xx, ``body`` its error) or could not be asked
    (``status`` None or 5xx). Nothing was opened; the transaction id is spent."""

    def __init__(self, message: str, status: int | None, body: Any, *, transient: bool):
        self.status = status
        self.body = body
        self.transient = transient
        super().__init__(message)


def new_transaction_id() -> str:
    """A fresh transaction id: 24 upper-case hexadecimal characters (96 random bits), like VIP's samples."""
    return secrets.token_hex(12).upper()


def vip_body(req: SessionRequest, transaction_id: str) -> dict[str, Any]:
    """The body of VIP's patronsession/existing or /new call, as the vendor's samples send it."""
    body: dict[str, Any] = {
        "patronID": req.patron_id,
        "vipCardNumber": req.vip_card_number,
        "dateOfBirth": req.date_of_birth,
        "remainingDailyDeposit": req.remaining_daily_deposit,
        "walletBalance": req.wallet_balance,
        "transactionID": transaction_id,
        "transactionAmount": req.amount,
        "transactionType": _TYPE_CODE[req.transaction_type],
        "returnURL": req.return_url,
        "productType": _PRODUCT_CODE[req.product_type],
    }
    if req.enrollment is not None:
        for name, wire in _ENROLLMENT_WIRE.items():
            body[wire] = getattr(req.enrollment, name)
    return {k: v for k, v in body.items() if v is not None}


def web_component_url(settings: VipSettings, transaction_type: str, session_id: str, return_url: str,
                      native: bool = False) -> str:
    """VIP's web component for the patron: ``{base}?mode=..&redirectUrl=..#{sessionId}``."""
    base = (settings.web_component_url or settings.base_url).rstrip("/")
    query = {"mode": transaction_type, **({"native": "true"} if native else {}), "redirectUrl": return_url}
    return f"{base}?{urlencode(query)}#{session_id}"


def open_session(req: SessionRequest, *, store: SessionStore, vip: PatronSessionApi, settings: VipSettings,
                 token_name: str | None = None) -> OpenedSession:
    """Reserve the transaction id, ask VIP to open the session, record its answer; the opened session.

    Raises TransactionIdTaken (the operator's id is used already), SessionRefused (VIP refused or did
    not answer; recorded as refused) and LedgerUnavailable.
    """
    txid = req.transaction_id or new_transaction_id()
    store.reserve(PatronSession(
        transaction_id=txid, status="opening", patron_kind=req.patron_kind, patron_id=req.patron_id,
        vip_card_number=req.vip_card_number, transaction_type=req.transaction_type, amount=req.amount,
        wallet_balance=req.wallet_balance, remaining_daily_deposit=req.remaining_daily_deposit,
        product_type=req.product_type, return_url=req.return_url, token_name=token_name))
    try:
        answer = vip.open_patron_session(req.patron_kind, vip_body(req, txid))
    except VipRejectedError as exc:
        body = exc.body if isinstance(exc.body, dict) else {"text": str(exc.body or "")}
        store.mark_refused(txid, exc.status, jsonable(mask_mapping(body)))
        log.info("VIP refused the patron session", extra={"transaction_id": txid, "status": exc.status})
        raise SessionRefused(str(exc), exc.status, body, transient=False) from None
    except VipTransientError as exc:
        store.mark_refused(txid, exc.status, {"message": str(exc)})
        log.warning("VIP did not open the patron session", extra={"transaction_id": txid, "status": exc.status})
        raise SessionRefused(str(exc), exc.status, None, transient=True) from None
    session_id = str(field(answer, "sessionId"))
    store.mark_open(txid, session_id)
    log.info("patron session open", extra={"transaction_id": txid, "transaction_type": req.transaction_type})
    expires = field(answer, "expires")
    return OpenedSession(txid, session_id,
                         web_component_url(settings, req.transaction_type, session_id, req.return_url, req.native),
                         req.transaction_type, req.amount, str(expires) if expires is not None else None)
