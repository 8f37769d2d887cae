"""The simulated operator wallet (Starlette), speaking the contract of ``worker.wallet.http``.

Balances and the patrons of VIP cards (``GET /patrons?vip_card_number=``) come from the
seeded patrons and the crowd; holds, captures, releases, reversals and
credits are idempotent by key. ``POST /sim/faults`` with ``{"down": true}`` makes every wallet call
answer 503 (nothing recorded) until ``{"down": false}``: the wallet service down, as the soak plays it.
``GET /sim/stats`` gives, per key, ``holds`` (funds
actually frozen), ``captures``, ``releases``, ``reversals`` and ``credits`` (each
never more than 1), ``hold_requests`` (PUTs per key), ``card_lookups`` (patron
lookups per card) and every hold's state;
``POST /sim/reset`` starts over.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producers.sim.patrons import find, wallet_balances
from worker.config import Settings
from worker.errors import WalletRefusedError
from worker.wallet.fake import InMemoryWallet
from worker.wallet.protocol import Hold

_STATUS = {"unknown_patron": 404, "no_such_hold": 404, "key_conflict": 409, "wrong_state": 409}


class WalletSim:
    """The wallet app's handlers over an InMemoryWallet."""

    def __init__(self, settings: Settings):
        token = settings.wallet.token
        self.token = token.get_secret_value() if token is not None else None
        self.lock = threading.Lock()
        self.down = False  # POST /sim/faults {"down": true}: every wallet call answers 503
        self.reset()

    def reset(self) -> None:
        """Back to the seeded balances, no holds."""
        self.wallet = InMemoryWallet(wallet_balances())
        self.requests: Counter[str] = Counter()
        self.card_lookups: Counter[str] = Counter()

    def _denied(self, request: Request) -> Response | None:
        if self.down:
            return JSONResponse({"message": "the wallet service is down (simulated)"}, status_code=503)
        if self.token is None:
            return None
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "bad or missing wallet token"}, status_code=401)
        return None

    async def balance(self, request: Request) -> Response:
        """GET /patrons/{patron_id}/balance."""
        if (denied := self._denied(request)) is not None:
            return denied
        value = self.wallet.balance(request.path_params["patron_id"])
        if value is None:
            return JSONResponse({"reason": "unknown_patron", "message": "no such patron"}, 404)
        return JSONResponse({"balance": str(value)})

    async def patron(self, request: Request) -> Response:
        """GET /patrons?vip_card_number=...: the seeded (or crowd) patron of that card, else 404."""
        if (denied := self._denied(request)) is not None:
            return denied
        card = request.query_params.get("vip_card_number", "")
        with self.lock:
            self.card_lookups[card] += 1
        patron = find(card) if card else None
        if patron is None:
            return JSONResponse({"reason": "unknown_card", "message": "no patron with this VIP card"}, 404)
        return JSONResponse({"patron_id": patron.patron_id})

    async def hold(self, request: Request) -> Response:
        """PUT /holds/{key}: freeze once per key."""
        if (denied := self._denied(request)) is not None:
            return denied
        key = request.path_params["key"]
        with self.lock:
            self.requests[key] += 1
        try:
            body = json.loads(await request.body(), parse_float=Decimal)
            patron_id, amount = str(body["patron_id"]), Decimal(str(body["amount"]))
        except (ValueError, KeyError, TypeError, InvalidOperation):
            return JSONResponse({"reason": "bad_request", "message": "need patron_id and amount"}, 400)
        try:
            hold = self.wallet.hold(key, patron_id, amount)
        except WalletRefusedError as exc:
            return _refused(exc)
        return JSONResponse(hold.to_dict())

    async def release(self, request: Request) -> Response:
        """DELETE /holds/{key}."""
        if (denied := self._denied(request)) is not None:
            return denied
        key = request.path_params["key"]
        try:
            if not self.wallet.release(key):
                return JSONResponse({"reason": "no_such_hold", "message": "no such hold"}, 404)
        except WalletRefusedError as exc:
            return _refused(exc)
        return JSONResponse(self.wallet.holds()[key].to_dict())

    async def capture(self, request: Request) -> Response:
        """POST /holds/{key}/capture."""
        return self._hold_step(request, self.wallet.capture)

    async def reverse(self, request: Request) -> Response:
        """POST /holds/{key}/reverse."""
        return self._hold_step(request, self.wallet.reverse)

    def _hold_step(self, request: Request, step: Callable[[str], Hold]) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        try:
            return JSONResponse(step(request.path_params["key"]).to_dict())
        except WalletRefusedError as exc:
            return _refused(exc)

    async def credit(self, request: Request) -> Response:
        """PUT /credits/{key}: a confirmed deposit, once per key."""
        if (denied := self._denied(request)) is not None:
            return denied
        try:
            body = json.loads(await request.body(), parse_float=Decimal)
            patron_id, amount = str(body["patron_id"]), Decimal(str(body["amount"]))
        except (ValueError, KeyError, TypeError, InvalidOperation):
            return JSONResponse({"reason": "bad_request", "message": "need patron_id and amount"}, 400)
        try:
            return JSONResponse(self.wallet.credit(request.path_params["key"], patron_id, amount).to_dict())
        except WalletRefusedError as exc:
            return _refused(exc)

    async def stats(self, request: Request) -> Response:
        """Holds frozen and requested per key."""
        holds = self.wallet.holds()
        return JSONResponse(
            {
                "holds": dict(self.wallet.holds_created),
                "captures": dict(self.wallet.captures),
                "releases": dict(self.wallet.releases),
                "reversals": dict(self.wallet.reversals),
                "credits": dict(self.wallet.credits_made),
                "hold_requests": dict(self.requests),
                "card_lookups": dict(self.card_lookups),
                "held": {k: h.to_dict() for k, h in holds.items()},
            }
        )

    async def faults(self, request: Request) -> Response:
        """POST /sim/faults: ``{"down": true|false}``."""
        try:
            data = json.loads(await request.body() or b"{}")
            down = data["down"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"message": 'bad faults document: want {"down": true|false}'}, status_code=400)
        if not isinstance(down, bool):
            return JSONResponse({"message": "bad faults document: down must be true or false"}, status_code=400)
        self.down = down
        return JSONResponse({"down": self.down})

    async def reset_route(self, request: Request) -> Response:
        """POST /sim/reset."""
        self.reset()
        return JSONResponse({"reset": True})


def _refused(exc: WalletRefusedError) -> Response:
    return JSONResponse({"reason": exc.reason, "message": str(exc)}, _STATUS.get(exc.reason, 422))


def build_wallet_app(settings: Settings) -> Starlette:
    """The wallet service app."""
    sim = WalletSim(settings)
    return Starlette(
        routes=[
            Route("/patrons", sim.patron, methods=["GET"]),
            Route("/patrons/{patron_id}/balance", sim.balance, methods=["GET"]),
            Route("/holds/{key}", sim.hold, methods=["PUT"]),
            Route("/holds/{key}", sim.release, methods=["DELETE"]),
            Route("/holds/{key}/capture", sim.capture, methods=["POST"]),
            Route("/holds/{key}/reverse", sim.reverse, methods=["POST"]),
            Route("/credits/{key}", sim.credit, methods=["PUT"]),
            Route("/sim/stats", sim.stats, methods=["GET"]),
            Route("/sim/reset", sim.reset_route, methods=["POST"]),
            Route("/sim/faults", sim.faults, methods=["POST"]),
        ]
    )
