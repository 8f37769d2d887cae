"""The operator site's API (FastAPI): open patron sessions, ask where a returning patron goes.

- ``POST /api/v1/sessions`` (scope ``sessions``): open a VIP Connect patron session;
  201 with the web component URL. 409 when the operator's transaction id is used, VIP's 4xx
  passed on with VIP's error body (401/403 from VIP: 502, they are vipflow's credentials),
  502 when VIP failed or did not answer. Nothing refused is recorded as open.
- ``GET /api/v1/transactions/{id}`` (scope ``status``): state, type, amount, redirect.
- ``POST /api/v1/labels`` (scope ``labels``): record outcome labels (``producers.web.labels_api``).
- ``GET /healthz``; the OpenAPI document at ``/openapi.json``.

The token is checked before the body is read (:class:`producers.web.auth.Guard`), and bodies are
bounded (``web.max_body_bytes``, 413).

Every error is ``{"error": "<one line>"}`` (plus VIP's status and body where VIP answered): an unknown
route, a body that is not JSON (400), one that does not validate (422) included.
Handlers are plain functions: FastAPI runs them in its thread pool, beside the blocking ledger
and VIP calls.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from producers.web.auth import Guard, check_guarded, require
from producers.web.labels_api import add_routes as add_label_routes
from worker.config import Settings
from worker.errors import LedgerUnavailable
from worker.ledger import Ledger
from worker.ledger.api_tokens import TokenStore
from worker.ledger.sessions import SessionStore, TransactionIdTaken
from worker.patron_sessions import SessionRefused, SessionRequest, open_session
from worker.pipeline import Deps
from worker.tx_status import transaction_status
from worker.vip.protocol import PatronSessionApi


class ErrorBody(BaseModel):
    """Every error answer: one line saying what is wrong and what to do."""

    error: str
    vip_status: int | None = None
    vip_error: dict[str, Any] | None = None


class OpenedBody(BaseModel):
    """A session VIP opened: send the patron to ``web_component_url``. Money with two decimals."""

    transaction_id: str
    session_id: str
    web_component_url: str
    transaction_type: str
    amount: str
    expires: str | None = None


class StatusBody(BaseModel):
    """A transaction's state and where to send its patron (no personal data)."""

    transaction_id: str
    state: str
    transaction_type: str | None
    amount: str | None
    redirect: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in (401, 403, *codes)}


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **{k: v for k, v in extra.items() if v is not None}},
                        status_code=status)


def _first_problem(exc: RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "the body"
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    return f"{where}: {msg}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def create_app(settings: Settings, *, ledger: Ledger | None = None, vip: PatronSessionApi | None = None,
               deps: Deps | None = None) -> FastAPI:
    """The API and the review workspace (``producers.web.workspace``) on the configured ledger and VIP
    Connect client (each replaceable; ``deps``: the workspace's, built on first use when not given)."""
    if ledger is None:
        ledger = Ledger.open(settings.database.url)
    if vip is None:
        from worker.vip.client import VipClient

        vip = VipClient(settings.vip)
    app = FastAPI(title="vipflow", version="1", summary="The operator site's side of VIP Connect",
                  docs_url=None, redoc_url=None)
    app.state.ledger = ledger
    app.state.sessions = SessionStore(ledger.engine)
    app.state.tokens = TokenStore(ledger.engine)
    app.state.vip = vip

    app.add_middleware(Guard, api=app, max_body=settings.web.max_body_bytes)
    from producers.web.workspace import install

    install(app, settings, ledger, deps)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return _error(400, "the body is not JSON; send a JSON object with Content-Type: application/json")
        return _error(422, _first_problem(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no such route: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; allowed: " \
                      f"{(exc.headers or {}).get('Allow', 'none')}"
        elif exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            message = "the body could not be read; send a JSON object with Content-Type: application/json"
        else:
            message = str(exc.detail)
        response = _error(exc.status_code, message)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal error; the service's log says more")

    @app.exception_handler(LedgerUnavailable)
    async def ledger_down(request: Request, exc: LedgerUnavailable) -> JSONResponse:
        return _error(503, str(exc))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/sessions", status_code=201, response_model=OpenedBody, responses=_errors(409, 422, 502),
              dependencies=[Depends(require("sessions"))])
    def open_patron_session(body: SessionRequest, request: Request) -> Any:
        """Open a VIP Connect patron session and answer the URL of VIP's web component."""
        try:
            opened = open_session(body, store=app.state.sessions, vip=app.state.vip, settings=settings.vip,
                                  token_name=getattr(request.state, "token_name", None))
        except TransactionIdTaken as exc:
            return _error(409, f"{exc}; give another transaction_id or none (vipflow then issues one)")
        except SessionRefused as exc:
            status = exc.status if exc.status is not None and 400 <= exc.status < 500 else None
            if status in (401, 403):
                return _error(502, f"VIP Connect refused vipflow's credentials ({exc}); nothing was opened",
                              vip_status=status, vip_error=exc.body if isinstance(exc.body, dict) else None)
            if status is None:
                return _error(502, f"{exc}; nothing was opened, try again", vip_status=exc.status)
            return _error(status, f"VIP Connect refused the session: {exc}; nothing was opened",
                          vip_status=status, vip_error=exc.body if isinstance(exc.body, dict) else None)
        return opened.to_dict()

    @app.get("/api/v1/transactions/{transaction_id}", response_model=StatusBody, responses=_errors(404),
             dependencies=[Depends(require("status"))])
    def status(transaction_id: str = Path(pattern=r"^[\x20-\x7e]{1,64}$")) -> Any:
        """A transaction's state, type and amount, and where to send its returning patron."""
        found = transaction_status(transaction_id, ledger=app.state.ledger, sessions=app.state.sessions,
                                   redirects=settings.redirects)
        if found is None:
            return _error(404, f"no transaction or open session {transaction_id!r}")
        return found.to_dict()

    add_label_routes(app, _errors(413))
    check_guarded(app)
    return app
