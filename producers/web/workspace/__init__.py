"""The review workspace: server-rendered pages for payments analysts, beside the operator site's API.

``install(app, settings, ledger)`` adds it to ``vipflow web``'s FastAPI app: cookie sessions
(``session``), the pages (``pages``), security headers on every page, and the error pages. The API
under ``/api`` keeps its bearer tokens and never reads the session cookie. No JavaScript is needed:
every page is a plain HTML form or link; the queue reloads itself every 30 seconds (a meta refresh).
"""

from __future__ import annotations

import logging
import secrets
import threading
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from redis import RedisError
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.config import Settings
from worker.errors import LedgerUnavailable
from worker.ledger import Ledger
from worker.ledger.users import UserStore
from worker.pipeline import Deps
from worker.review_roles import Forbidden
from worker.store.locks import LockBusy

log = logging.getLogger("vipflow.web")
COOKIE = "vipflow_session"
_CSS = Path(__file__).with_name("workspace.css")
# No script at all, styles from this site only, no framing, forms post only here.
_HEADERS = [(b"content-security-policy", b"default-src 'none'; style-src 'self'; img-src 'self'; "
             b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
            (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"), (b"cache-control", b"no-store")]


class _PageHeaders:
    """Security headers on every answer outside ``/api`` (the pages may hold personal data: never cached)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith("/api"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in _HEADERS if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


def _secret(settings: Settings) -> str:
    configured = settings.web.session_secret
    if configured is not None:
        return configured.get_secret_value()
    log.warning("web.session_secret is not set: sessions are signed with a random key of this process and end "
                "when it stops (set VIPFLOW_WEB__SESSION_SECRET where several processes serve the workspace)")
    return secrets.token_urlsafe(48)


def install(app: FastAPI, settings: Settings, ledger: Ledger, deps: Deps | None = None) -> None:
    """Add the workspace to ``app`` (``deps``: built from ``settings`` on first use when not given)."""
    from producers.web.workspace.pages import TEMPLATES, build_router
    from producers.web.workspace.session import LoginLimiter, LoginNeeded, PageError, Sessions, csrf_token

    sessions = Sessions(settings, UserStore(ledger.engine))
    built: list[Deps] = [deps] if deps is not None else []
    lock = threading.Lock()

    def deps_of() -> Deps:
        with lock:
            if not built:
                from worker.bootstrap import bootstrap

                built.append(bootstrap(settings, ledger=ledger))
            return built[0]

    def limiter() -> LoginLimiter:
        d = deps_of()
        web = settings.web
        return LoginLimiter(d.locks.redis, settings.redis.key_prefix, web.login_max_failures, web.login_window_s,
                            web.login_max_failures_per_address)

    app.state.workspace_deps = deps_of
    app.include_router(build_router(sessions, deps_of, limiter))
    app.add_middleware(SessionMiddleware, secret_key=_secret(settings), session_cookie=COOKIE,
                       max_age=settings.web.session_max_age_s, same_site="lax", https_only=settings.web.cookie_secure)
    app.add_middleware(_PageHeaders)

    def page(request: Request, status: int, message: str) -> HTMLResponse:
        user = None
        return TEMPLATES.TemplateResponse(request, "error.html", {"user": user, "csrf": csrf_token(request),
                                                                  "status": status, "message": message,
                                                                  "flash": None}, status_code=status)

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> Response:
        return page(request, exc.status, exc.message)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return page(request, 403, str(exc))

    @app.exception_handler(LoginNeeded)
    async def login_needed(request: Request, exc: LoginNeeded) -> Response:
        if exc.why:
            request.session["why"] = exc.why
        if request.method != "GET":
            return page(request, 401, exc.why or "log in first; nothing was done")
        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)

    @app.exception_handler(LedgerUnavailable)
    async def ledger_down(request: Request, exc: LedgerUnavailable) -> Response:
        if request.url.path.startswith("/api"):
            from fastapi.responses import JSONResponse

            return JSONResponse({"error": str(exc)}, status_code=503)
        return page(request, 503, str(exc))

    @app.exception_handler(LockBusy)
    async def busy(request: Request, exc: LockBusy) -> Response:
        return page(request, 409, "someone else is acting on this transaction right now; look again in a moment")

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, exc: RedisError) -> Response:
        # The API's routes never reach Redis; the pages do (claims, locks, the login limiter).
        log.warning("the review workspace could not reach Redis", extra={"error": type(exc).__name__})
        return page(request, 503, "Redis (claims and locks) does not answer; nothing was done, try again shortly")

    @app.get("/static/workspace.css", include_in_schema=False)
    def css() -> Response:
        return Response(_CSS.read_bytes(), media_type="text/css", headers={"Cache-Control": "max-age=300"})


