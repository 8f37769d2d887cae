"""The VIP Connect API over HTTP (``worker.httpsession``: urllib3's pool), signed with the operator's own JWT.

Each method makes exactly one request: retries and reconciliation belong to
``worker.vip.approve``, which knows whether a repeat is safe. The HTTP client
never retries on its own for the same reason.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from decimal import InvalidOperation
from typing import Any

from worker.config import VipSettings
from worker.errors import ConfigError, VipRejectedError, VipTransientError
from worker.httpsession import HttpClient, HttpFailed
from worker.jsonbody import DECIMAL_JSON, loads
from worker.masking import mask_mapping, mask_text
from worker.tokens import TokenCache
from worker.vip.models import (
    AccountInquiry,
    ApprovalResult,
    TransactionStatus,
    field,
    fold,
    jsonable,
)
from worker.vip.protocol import ApprovalKind, PatronKind

_ERROR_FIELDS = (
    "errorCode",
    "transactionStage",
    "operatorErrorMessage",
    "operatorDeclineDescription",
    "patronErrorMessage",
    "resolution",
)


def _dumps(body: Mapping[str, Any]) -> bytes:
    # Decimals go out as strings: exact, and the form VIP's own examples use ("89.76").
    return json.dumps(jsonable(dict(body)), separators=(",", ":")).encode()


def _loads(content: bytes) -> Any:
    if not content.strip():
        return None
    try:
        return loads(DECIMAL_JSON, content)
    except (ValueError, InvalidOperation):
        return content.decode("utf-8", "replace")[:500]


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header in seconds from now (delta-seconds or an HTTP date); None when absent
    or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def describe_error(body: Any) -> str:
    """A one-line summary of VIP's error model (errorCode, stage, operator message), masked."""
    if not isinstance(body, dict):
        return ""
    parts = [f"{name} {field(body, name)}" for name in _ERROR_FIELDS[:3] if field(body, name) is not None]
    return mask_text(", ".join(parts))


class VipClient:
    """VipApi over HTTP; paths, timeout and JWT claims from ``vip.*`` settings."""

    def __init__(self, settings: VipSettings, http: HttpClient | None = None):
        if settings.secret_key1 is None:
            raise ConfigError("vip.secret_key1", "is not set; set VIPFLOW_VIP__SECRET_KEY1 (base64)")
        if not settings.operator_id:
            raise ConfigError("vip.operator_id", "is empty; set it to the OperatorId VIP assigned")
        self._settings = settings
        self._base = settings.base_url.rstrip("/")
        self._tokens = TokenCache(
            settings.signing_keys()[0],
            settings.operator_id,
            settings.audience,
            settings.token_ttl_s,
        )
        self._http = http or HttpClient(self._base)

    def _post(self, path: str, body: Mapping[str, Any], what: str) -> tuple[int, Any]:
        headers = {
            "Authorization": f"Bearer {self._tokens.token()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            resp = self._http.request("POST", path, body=_dumps(body), headers=headers,
                                      timeout=self._settings.timeout_s)
        except HttpFailed as exc:
            sent = not exc.never_sent
            kind = "timed out" if exc.timed_out else "failed to connect"
            if sent and not exc.timed_out:
                kind = "lost the connection"
            why = "" if exc.timed_out else f" ({exc.why})"
            raise VipTransientError(
                f"VIP Connect {what}: {kind}{why}; "
                f"{'the request may have reached VIP' if sent else 'the request was not sent'}",
                maybe_sent=sent,
            ) from None
        status = resp.status_code
        payload = _loads(resp.content)
        if status >= 500 or status in (408, 429):
            after = retry_after_s(resp.headers.get("Retry-After")) if status in (429, 503) else None
            hint = f" (Retry-After {after:g} s)" if after is not None else ""
            raise VipTransientError(f"VIP Connect {what}: HTTP {status}{hint}; retry later", maybe_sent=True,
                                    status=status, retry_after_s=after)
        return status, payload

    def _refused(self, status: int, payload: Any, what: str) -> VipRejectedError:
        body = (
            payload
            if isinstance(payload, dict)
            else ({"text": mask_text(payload)} if isinstance(payload, str) else None)
        )
        hint = " (check vip.operator_id, vip.audience and the secret keys)" if status in (401, 403) else ""
        detail = describe_error(payload)
        return VipRejectedError(
            status,
            jsonable(body),
            f"VIP Connect {what}: HTTP {status}{': ' + detail if detail else ''}{hint}",
        )

    def account_inquiry(self, vip_card_number: str, product_type: str | None) -> AccountInquiry:
        """POST accountlookup by card number; ``found=False`` on 404, 204, null or empty body."""
        body: dict[str, Any] = {"VipAccountNumber": vip_card_number}
        if product_type:
            body["ProductType"] = product_type
        status, payload = self._post(self._settings.account_lookup_path, body, "account inquiry")
        if status in (404, 204) or (status == 200 and not payload):
            return AccountInquiry.not_found()
        if status != 200 or not isinstance(payload, dict):
            raise self._refused(status, payload, "account inquiry")
        return AccountInquiry.from_response(payload)

    def approve(self, kind: ApprovalKind, body: Mapping[str, Any]) -> ApprovalResult:
        """One Deposit/WithdrawApproval call; success only when transactionResult is "Success"."""
        path = self._settings.deposit_approval_path if kind == "deposit" else self._settings.withdraw_approval_path
        what = f"{kind} approval of {field(dict(body), 'transactionId')}"
        status, payload = self._post(path, body, what)
        if status == 200 and not isinstance(payload, dict):
            # VIP took the call but the answer is unreadable: the approval may have happened.
            raise VipTransientError(
                f"VIP Connect {what}: unreadable 200 answer; reconcile",
                maybe_sent=True,
                status=status,
            )
        if status != 200 or str(field(payload, "transactionResult")).lower() != "success":
            raise self._refused(status, payload, what)
        return ApprovalResult(
            transaction_id=str(field(payload, "transactionId") or field(dict(body), "transactionId")),
            transaction_result=str(field(payload, "transactionResult")),
            raw=jsonable(payload),  # ids, amount, type, time, result: no personal data
        )

    def open_patron_session(self, patron_kind: PatronKind, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST patronsession/existing or /new once; VIP's answer, which carries ``sessionId``."""
        s = self._settings
        path = s.session_existing_path if patron_kind == "existing" else s.session_new_path
        what = f"patron session for {field(dict(body), 'transactionID')}"
        status, payload = self._post(path, body, what)
        if status not in (200, 201) or not isinstance(payload, dict) or not field(payload, "sessionId"):
            raise self._refused(status, payload, what)
        return dict(payload)

    def lookup_transaction(self, transaction_id: str) -> TransactionStatus | None:
        """POST Transaction {transactionId, fullDetails}; the matching entry, None on 204."""
        status, payload = self._post(
            self._settings.transaction_path,
            {"transactionId": transaction_id, "fullDetails": True},
            f"transaction lookup of {transaction_id}",
        )
        if status in (204, 404) or (status == 200 and not payload):
            return None
        if status != 200:
            raise self._refused(status, payload, f"transaction lookup of {transaction_id}")
        return status_from_lookup(payload, transaction_id)


def status_from_lookup(payload: Any, transaction_id: str) -> TransactionStatus | None:
    """The entry of a lookup answer (an array, or one object) for ``transaction_id``."""
    entries = payload if isinstance(payload, list) else [payload]
    for entry in entries:
        if isinstance(entry, dict) and str(field(entry, "transactionId")) == transaction_id:
            # Full details may name the patron; amounts are kept exact (masking would hide digits).
            masked = jsonable(mask_mapping(entry))
            masked.update({k: jsonable(v) for k, v in entry.items() if fold(k) == "amount"})
            return TransactionStatus.model_validate({**entry, "raw": masked})
    return None
