"""The simulated VIP Connect API (Starlette): approvals, transaction lookup, account lookup, patron sessions.

Every API call must carry the operator's JWT (HS256, SecretKey1 or SecretKey2,
iss = vip.operator_id, aud = vip.audience) or gets 401. Handlers are async and
sleep with asyncio so that latency faults never block the event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producers.sim.patrons import BY_CARD, find, inquiry_response
from producers.sim.state import SimState, vip_error
from producers.sim.wire import dumps
from worker.config import Settings
from worker.errors import ConfigError
from worker.tokens import TokenInvalid, TokenPolicy, VerifiedTokens, bearer
from worker.vip.models import field


def _json(data: Any, status: int = 200) -> Response:
    return Response(dumps(data), status_code=status, media_type="application/json")


class VipSim:
    """The VIP app's handlers over one SimState."""

    def __init__(self, settings: Settings, state: SimState):
        self.state = state
        self.keys = settings.vip.signing_keys()
        self.policy = TokenPolicy(settings.vip.operator_id, settings.vip.audience, leeway_s=60)
        self.tokens = VerifiedTokens(self.keys, self.policy)  # a token checked once, until it expires

    async def _enter(self, request: Request, endpoint: str) -> tuple[Any, Response | None]:
        """Count, authenticate, parse and delay; a Response means answer it at once."""
        with self.state.lock:
            self.state.calls[endpoint] += 1
        try:
            self.tokens.verify(bearer(request.headers.get("authorization")))
        except TokenInvalid as exc:
            return None, JSONResponse({"message": str(exc)}, status_code=401)
        try:
            body = json.loads(await request.body(), parse_float=Decimal)
        except (ValueError, InvalidOperation):
            return None, _json(vip_error(99, "The request body is not valid JSON"), 400)
        faults = self.state.faults
        delay = (faults.latency_ms + faults.timeout_ms) / 1000
        if delay:
            await asyncio.sleep(delay)
        if self.state.random_error():
            return None, _json({"message": "simulated server error"}, 500)
        return body, None

    async def _scripted(self, endpoint: str, key: str) -> Response | str | None:
        step = self.state.next_scripted(endpoint, key)
        if step is None or step == "commit_then_timeout":
            return step  # type: ignore[no-any-return]
        if step == "timeout":
            await asyncio.sleep(self.state.faults.hang_ms / 1000)
            return _json({"message": "simulated timeout"}, 504)
        status, body = (int(step["status"]), step.get("body")) if isinstance(step, dict) else (int(step), None)
        if status >= 500 or status == 429:
            answer = _json(body or {"message": "simulated server error"}, status)
        else:
            answer = _json(body or vip_error(), status)
        for name, value in (step.get("headers") or {}).items() if isinstance(step, dict) else ():
            answer.headers[str(name)] = str(value)  # e.g. Retry-After on a 429 or 503
        return answer

    async def approve(self, request: Request) -> Response:
        """Deposit/WithdrawApproval (and the ...Json variants)."""
        arrived_at = time.time()
        kind = "deposit" if "deposit" in request.url.path.lower() else "withdraw"
        body, early = await self._enter(request, f"{kind}_approval")
        if early is not None:
            return early
        if not isinstance(body, dict):
            return _json(vip_error(99, "The request body must be a JSON object"), 400)
        txid = str(field(body, "transactionId") or "")
        if not 8 <= len(txid) <= 25:
            return _json(vip_error(99, "transactionId must be 8 to 25 characters"), 400)
        try:
            amount = Decimal(str(field(body, "amount")))
            if not amount.is_finite() or amount <= 0:
                raise InvalidOperation
        except InvalidOperation:
            return _json(vip_error(99, "amount must be a positive decimal"), 400)
        ttype = str(field(body, "transactionType") or kind).lower()
        if ttype != kind:
            return _json(vip_error(99, f"transactionType must be {kind}"), 400)
        facts = {
            "patron_id": field(body, "patronId"),
            "vip_card_number": field(body, "vipCardNumber"),
            "amount": str(amount),
            "fund_transfer_type": field(body, "fundTransferType"),
        }
        step = await self._scripted("approve", txid)
        if isinstance(step, Response):
            if 400 <= step.status_code < 500:
                self.state.record(kind, facts, txid, approved=False, error=json.loads(bytes(step.body)))
            return step
        self.state.record(kind, facts, txid, approved=True, arrived_at=arrived_at)
        if step == "commit_then_timeout":
            await asyncio.sleep(self.state.faults.hang_ms / 1000)
        return _json(
            {
                "transactionId": txid,
                "amount": str(amount),
                "transactionType": kind,
                "timestamp": datetime.now(UTC).isoformat(),
                "transactionResult": "Success",
            }
        )

    async def transaction(self, request: Request) -> Response:
        """Transaction lookup by transactionId, patronId or vipCardNumber: 200 array or 204."""
        body, early = await self._enter(request, "transaction_lookup")
        if early is not None:
            return early
        wanted = {name: field(body, name) for name in ("transactionId", "patronId", "vipCardNumber")}
        wanted = {k: str(v) for k, v in wanted.items() if v not in (None, "")}
        if not wanted:
            return _json(vip_error(99, "give transactionId, patronId or vipCardNumber"), 400)
        step = await self._scripted("lookup", wanted.get("transactionId", ""))
        if isinstance(step, Response):
            return step
        with self.state.lock:
            found = [
                dict(t) for t in self.state.transactions.values() if all(str(t.get(k)) == v for k, v in wanted.items())
            ]
        return _json(found) if found else Response(status_code=204)

    async def account(self, request: Request) -> Response:
        """accountlookup by VipAccountNumber (or ID details): a seeded or crowd patron, or 404."""
        body, early = await self._enter(request, "account_lookup")
        if early is not None:
            return early
        card = str(field(body, "vipAccountNumber") or "")
        id_number = str(field(body, "idNumber") or "")
        step = await self._scripted("account", card)
        if isinstance(step, Response):
            return step
        patron = find(card) or next(
            (p for p in BY_CARD.values() if id_number and p.id_number == id_number), None
        )
        if patron is None:
            return Response(status_code=404)
        return _json(inquiry_response(patron))


_TXID = re.compile(r"[A-Za-z0-9]{8,25}")
_SESSION_TYPES = {"0": "deposit", "1": "withdraw", "deposit": "deposit", "withdraw": "withdraw"}


def _session_problem(body: dict[str, Any], kind: str) -> str | None:
    """What VIP would refuse in a patron session request, or None."""
    if not _TXID.fullmatch(str(field(body, "transactionID") or "")):
        return "transactionID must be 8 to 25 letters or digits"
    if not str(field(body, "patronID") or "").strip():
        return "patronID is required"
    if str(field(body, "transactionType")).lower() not in _SESSION_TYPES:
        return "transactionType must be 0 (deposit) or 1 (withdraw)"
    try:
        amount = Decimal(str(field(body, "transactionAmount")))
        if not amount.is_finite() or amount <= 0:
            raise InvalidOperation
    except InvalidOperation:
        return "transactionAmount must be a positive decimal"
    if kind == "existing" and find(str(field(body, "vipCardNumber") or "")) is None:
        return "no VIP account has this vipCardNumber"
    return None


async def open_session(sim: VipSim, request: Request) -> Response:
    """patronsession/existing and /new: check the body as VIP would, answer a session id."""
    kind = "new" if request.url.path.rstrip("/").lower().endswith("new") else "existing"
    body, early = await sim._enter(request, f"session_{kind}")
    if early is not None:
        return early
    if not isinstance(body, dict):
        return _json(vip_error(99, "The request body must be a JSON object"), 400)
    problem = _session_problem(body, kind)
    txid = str(field(body, "transactionID") or "")
    step = await sim._scripted("session", txid)
    if isinstance(step, Response):
        return step
    if problem is None and txid in sim.state.sessions:
        problem = "transactionID was already used for a session"
    if problem is not None:
        error = vip_error(99, problem)
        error["transactionStage"] = "Session"
        return _json(error, 400)
    session_id = str(uuid.uuid4())
    ttype = _SESSION_TYPES[str(field(body, "transactionType")).lower()]
    card = field(body, "vipCardNumber")
    with sim.state.lock:
        sim.state.sessions[txid] = {
            "transactionId": txid, "sessionId": session_id, "patronId": str(field(body, "patronID")),
            "vipCardNumber": None if card is None else str(card), "transactionType": ttype,
            "amount": str(Decimal(str(field(body, "transactionAmount")))), "patronKind": kind,
        }
    expires = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    return _json({"sessionId": session_id, "expires": expires, "transactionId": txid,
                  "patronId": field(body, "patronID"), "vipCardNumber": card,
                  "enrollmentStatus": "complete" if kind == "existing" else "pending",
                  "transactionAmount": str(field(body, "transactionAmount"))})


def build_vip_app(settings: Settings, state: SimState) -> Starlette:
    """The VIP app on the paths ``vip.*_path`` name (plus the Json approval variants)."""
    if not settings.vip.signing_keys():
        raise ConfigError("vip.secret_key1", "the simulator needs it to verify tokens; set VIPFLOW_VIP__SECRET_KEY1")
    sim = VipSim(settings, state)
    v = settings.vip

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    async def faults(request: Request) -> Response:
        try:
            data = json.loads(await request.body() or b"{}")
            with state.lock:
                state.faults.update(data)
        except (ValueError, AttributeError, ConfigError) as exc:
            return JSONResponse({"message": f"bad faults document: {exc}"}, status_code=400)
        return JSONResponse(state.faults.to_dict())

    routes = [
        Route(p, sim.approve, methods=["POST"])
        for p in (
            v.deposit_approval_path,
            v.withdraw_approval_path,
            v.deposit_approval_path + "Json",
            v.withdraw_approval_path + "Json",
        )
    ]
    async def sessions(request: Request) -> Response:
        with state.lock:
            return JSONResponse(list(state.sessions.values()))

    async def session(request: Request) -> Response:
        return await open_session(sim, request)

    routes += [
        Route(v.session_existing_path, session, methods=["POST"]),
        Route(v.session_new_path, session, methods=["POST"]),
        Route("/sim/sessions", sessions, methods=["GET"]),
        Route(v.transaction_path, sim.transaction, methods=["POST"]),
        Route(v.account_lookup_path, sim.account, methods=["POST"]),
        Route("/sim/stats", stats, methods=["GET"]),
        Route("/sim/reset", reset, methods=["POST"]),
        Route("/sim/faults", faults, methods=["POST"]),
    ]
    return Starlette(routes=routes)
