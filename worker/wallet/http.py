"""The wallet over HTTP: a small contract the operator's wallet service implements.

All bodies are JSON; amounts are decimal strings. When ``wallet.token`` is set
every request carries ``Authorization: Bearer <token>``.

- ``GET {url}/patrons/{patron_id}/balance`` -> 200 ``{"balance": "123.45"}``
  (available funds, holds deducted); 404 when the patron is unknown.
- ``GET {url}/patrons?vip_card_number=7210695258`` -> 200 ``{"patron_id": "..."}``: the
  operator's patron of that VIP card (a documented withdrawal names only the card); 404
  when the wallet does not know the card.
- ``PUT {url}/holds/{key}`` with ``{"patron_id": "...", "amount": "12.34"}`` and the
  header ``Idempotency-Key: {key}`` -> 200 or 201
  ``{"key", "patron_id", "amount", "status": "held"}``. The same key again must
  return the same hold without freezing more. Refusals: 404 (unknown patron),
  409 (key reused for another patron or amount), 422 (e.g. insufficient funds),
  each with ``{"reason": "insufficient_funds", "message": "..."}``.
- ``DELETE {url}/holds/{key}`` -> 200 ``{..., "status": "released"}`` (also when
  already released); 404 when there is no such hold; 409 ``{"reason": "wrong_state"}``
  when it was captured (its money moved: reverse it instead).
- ``POST {url}/holds/{key}/capture`` -> 200 ``{..., "status": "captured"}``: the held
  amount is taken from the patron's balance, once (the same call again answers the same
  capture). 404 no such hold; 409 ``wrong_state`` when it was released.
- ``POST {url}/holds/{key}/reverse`` -> 200 ``{..., "status": "reversed"}``: a captured
  amount is given back, once. 404 no such hold; 409 ``wrong_state`` when never captured.
- ``PUT {url}/credits/{key}`` with ``{"patron_id": "...", "amount": "12.34"}`` and
  ``Idempotency-Key: {key}`` -> 200 or 201 ``{"key", "patron_id", "amount", "status":
  "credited"}``: a confirmed deposit added to the balance once per key (the transaction
  id). 404 unknown patron, 409 key reused for another patron or amount.

5xx, timeouts and refused connections raise WalletTransientError; the worker
retries them. PUT (not POST) because the key names the hold: a repeat is the
same request, which is what makes it safe to retry.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from worker.config import WalletSettings
from worker.errors import WalletError, WalletRefusedError, WalletTransientError
from worker.httpsession import HttpAnswer, HttpClient, HttpFailed
from worker.jsonbody import DECIMAL_JSON, loads
from worker.masking import mask_text
from worker.wallet.protocol import HOLD_STATUSES, Credit, Hold, HoldStatus

_REFUSED = {404: "unknown_patron", 409: "key_conflict", 422: "refused"}
_REFUSED_HOLD = {404: "no_such_hold", 409: "wrong_state", 422: "refused"}


def _json(resp: HttpAnswer) -> Any:
    try:
        return loads(DECIMAL_JSON, resp.content or b"null")
    except (ValueError, InvalidOperation):
        return None


class HttpWallet:
    """Wallet over the HTTP contract in this module's docstring."""

    def __init__(self, settings: WalletSettings, http: HttpClient | None = None):
        self._base = settings.url.rstrip("/")
        self._timeout = settings.timeout_s
        self._http = http or HttpClient(self._base)
        self._headers = {"Accept": "application/json"}
        if settings.token is not None:
            self._headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"

    def _call(self, method: str, path: str, what: str, *, headers: dict[str, str] | None = None,
              data: str | None = None, params: dict[str, str] | None = None) -> HttpAnswer:
        try:
            resp = self._http.request(method, path, headers={**self._headers, **(headers or {})},
                                      timeout=self._timeout, body=data, params=params)
        except HttpFailed as exc:
            why = "timed out" if exc.timed_out else exc.why
            raise WalletTransientError(
                f"wallet {what}: {why}; check wallet.url and that the wallet is up"
            ) from None
        if resp.status_code >= 500:
            raise WalletTransientError(f"wallet {what}: HTTP {resp.status_code}; retry later")
        if resp.status_code in (401, 403):
            raise WalletError(f"wallet {what}: HTTP {resp.status_code}; check wallet.token")
        return resp

    def balance(self, patron_id: str) -> Decimal | None:
        """GET the patron's available balance; None on 404."""
        resp = self._call("GET", f"/patrons/{quote(patron_id, safe='')}/balance", "balance")
        if resp.status_code == 404:
            return None
        body = _json(resp)
        try:
            return Decimal(str(body["balance"]))
        except (TypeError, KeyError, InvalidOperation):
            raise WalletError(
                f"wallet balance: HTTP {resp.status_code} without a balance"
            ) from None

    def patron_for_card(self, vip_card_number: str) -> str | None:
        """GET the patron of the VIP card; None on 404. WalletError on an answer without a patron id."""
        resp = self._call("GET", "/patrons", "patron lookup", params={"vip_card_number": vip_card_number})
        if resp.status_code == 404:
            return None
        body = _json(resp)
        found = body.get("patron_id") if isinstance(body, dict) else None
        if resp.status_code != 200 or not isinstance(found, str | int) or not str(found).strip():
            raise WalletError(f"wallet patron lookup: HTTP {resp.status_code} without a patron_id")
        return str(found)

    def hold(self, key: str, patron_id: str, amount: Decimal) -> Hold:
        """PUT the hold ``key`` (idempotent); WalletRefusedError with the wallet's reason."""
        resp = self._put(f"/holds/{quote(key, safe='')}", key, patron_id, amount, f"hold {key}")
        body = _json(resp)
        if resp.status_code in (200, 201) and isinstance(body, dict):
            return _hold(body, key, resp.status_code)
        raise _refusal(resp, body, f"hold {key}", _REFUSED)

    def release(self, key: str) -> bool:
        """DELETE the hold ``key``; False when the wallet has no such hold; WalletRefusedError
        ``wrong_state`` when it was captured."""
        resp = self._call("DELETE", f"/holds/{quote(key, safe='')}", f"release {key}")
        if resp.status_code == 404:
            return False
        if resp.status_code == 409:
            raise _refusal(resp, _json(resp), f"release {key}", _REFUSED_HOLD)
        if resp.status_code not in (200, 204):
            raise WalletError(f"wallet release {key}: unexpected HTTP {resp.status_code}")
        return True

    def capture(self, key: str) -> Hold:
        """POST the capture of hold ``key`` (idempotent); WalletRefusedError ``no_such_hold`` or
        ``wrong_state``."""
        return self._hold_step(key, "capture")

    def reverse(self, key: str) -> Hold:
        """POST the reversal of captured hold ``key`` (idempotent); WalletRefusedError ``no_such_hold``
        or ``wrong_state``."""
        return self._hold_step(key, "reverse")

    def credit(self, key: str, patron_id: str, amount: Decimal) -> Credit:
        """PUT the credit ``key`` (idempotent); WalletRefusedError with the wallet's reason."""
        resp = self._put(f"/credits/{quote(key, safe='')}", key, patron_id, amount, f"credit {key}")
        body = _json(resp)
        if resp.status_code in (200, 201) and isinstance(body, dict):
            try:
                return Credit(str(body.get("key", key)), str(body["patron_id"]), Decimal(str(body["amount"])))
            except (KeyError, InvalidOperation):
                raise WalletError(f"wallet credit {key}: HTTP {resp.status_code} with a malformed credit") from None
        raise _refusal(resp, body, f"credit {key}", _REFUSED)

    def _put(self, path: str, key: str, patron_id: str, amount: Decimal, what: str) -> HttpAnswer:
        payload = json.dumps({"patron_id": patron_id, "amount": str(amount)})
        return self._call("PUT", path, what, data=payload,
                          headers={"Idempotency-Key": key, "Content-Type": "application/json"})

    def _hold_step(self, key: str, step: str) -> Hold:
        what = f"{step} {key}"
        resp = self._call("POST", f"/holds/{quote(key, safe='')}/{step}", what,
                          headers={"Idempotency-Key": f"{key}:{step}"})
        body = _json(resp)
        if resp.status_code == 200 and isinstance(body, dict):
            return _hold(body, key, resp.status_code)
        raise _refusal(resp, body, what, _REFUSED_HOLD)


def _refusal(resp: HttpAnswer, body: Any, what: str, reasons: dict[int, str]) -> WalletRefusedError:
    """The wallet's refusal as an error: its reason (from the body, else by status) and its message,
    masked and cut to 200 characters."""
    reason = reasons.get(resp.status_code, "refused")
    message = ""
    if isinstance(body, dict):
        reason = str(body.get("reason") or reason)
        message = mask_text(str(body.get("message") or ""))[:200]
    detail = f": {message}" if message else ""
    return WalletRefusedError(reason, f"wallet {what}: HTTP {resp.status_code} {reason}{detail}")


def _hold(body: dict[str, Any], key: str, status: int) -> Hold:
    try:
        state = str(body.get("status", "held"))
        hold_status: HoldStatus = next((s for s in HOLD_STATUSES if s == state), "held")
        return Hold(
            str(body.get("key", key)),
            str(body["patron_id"]),
            Decimal(str(body["amount"])),
            hold_status,
        )
    except (KeyError, InvalidOperation):
        raise WalletError(f"wallet hold {key}: HTTP {status} with a malformed hold") from None
