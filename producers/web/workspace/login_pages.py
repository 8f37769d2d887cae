"""The workspace's login pages: a password (rate-limited), or single sign-on (``web.oidc``), and logout.

Each refused or accepted login is a workspace event in the ledger (``login``, ``login_failed``,
``login_refused``, ``logout``) with its actor, listed by the audit page.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from producers.web.workspace.oidc import OidcClient, OidcFailed
from producers.web.workspace.session import LoginLimiter, PageError, Sessions, check_csrf, safe_next

CsrfField = Annotated[str, Form(alias="csrf")]


def add_routes(router: APIRouter, sessions: Sessions, limiter: Callable[[], LoginLimiter],
               render: Callable[..., HTMLResponse]) -> None:
    """``/login`` (GET, POST), ``/login/oidc``, ``/login/oidc/callback`` and ``/logout`` on ``router``."""
    settings = sessions.settings

    # --- login -------------------------------------------------------------------------------------

    @router.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> Response:
        return render(request, "login.html", None, next=safe_next(next), why=request.session.pop("why", None))

    @router.post("/login", response_class=HTMLResponse)
    def login(request: Request, csrf: CsrfField = "", username: Annotated[str, Form()] = "",
              password: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
        check_csrf(request, csrf)
        name = username.strip().lower()[:64]
        address = request.client.host if request.client else "unknown"
        limits = limiter()
        users = sessions.users
        wait = limits.blocked(name, address)
        if wait is not None:
            users.record("anonymous", "login_refused", name if users.get(name) else None, {"why": "rate limit"})
            return render(request, "login.html", None, 429, next=safe_next(next),
                          why=f"too many failed logins; try again in {wait // 60 + 1} minute(s)")
        user = users.authenticate(name, password) if name and password else None
        if user is None:
            limits.failed(name, address)
            known = users.get(name)
            users.record("anonymous", "login_failed", name if known else None, {"known_user": known is not None})
            return render(request, "login.html", None, 401, next=safe_next(next),
                          why="wrong user name or password (or the account is disabled)")
        limits.succeeded(name)
        sessions.open(request, user)
        users.record(user.actor, "login", user.username, {"method": "password"})
        return RedirectResponse(safe_next(next), status_code=303)

    oidc = OidcClient(settings.web.oidc) if settings.web.oidc.issuer else None

    def callback_url(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/login/oidc/callback"

    @router.get("/login/oidc")
    def oidc_start(request: Request, next: str = "/") -> Response:
        if oidc is None:
            raise PageError(404, "single sign-on is not configured (web.oidc.issuer)")
        try:
            url, keep = oidc.start(callback_url(request))
        except OidcFailed as exc:
            raise PageError(502, f"single sign-on is unavailable: {exc}; log in with a password") from None
        request.session["oidc"] = {**keep, "next": safe_next(next)}
        return RedirectResponse(url, status_code=303)

    @router.get("/login/oidc/callback", response_class=HTMLResponse)
    def oidc_callback(request: Request, code: str = "", state: str = "", error: str = "") -> Response:
        if oidc is None:
            raise PageError(404, "single sign-on is not configured (web.oidc.issuer)")
        kept = request.session.pop("oidc", None)
        users = sessions.users

        def refuse(why: str, subject: str | None = None) -> Response:
            users.record("anonymous", "login_failed", subject, {"method": "oidc", "why": why[:200]})
            return render(request, "login.html", None, 401, next="/", why=f"single sign-on failed: {why}")

        if not isinstance(kept, dict) or not state or not hmac.compare_digest(str(kept.get("state")), state):
            return refuse("the answer does not belong to a login started here (state); start again")
        if error or not code:
            return refuse(f"the identity provider said {error[:60] or 'no code'}")
        try:
            claims = oidc.finish(callback_url(request), code, kept)
        except OidcFailed as exc:
            return refuse(str(exc))
        name = str(claims.get(settings.web.oidc.username_claim) or "").strip().lower()[:64]
        user = users.get(name) if name else None
        if user is None or not user.active:
            return refuse(f"no active workspace user {name!r}; an admin adds one with `vipflow users add "
                          f"{name or 'NAME'} --role ROLE --no-password`", name if user else None)
        sessions.open(request, user)
        users.record(user.actor, "login", user.username, {"method": "oidc", "issuer": settings.web.oidc.issuer})
        return RedirectResponse(str(kept.get("next") or "/"), status_code=303)

    @router.post("/logout")
    def logout(request: Request, csrf: CsrfField = "") -> Response:
        check_csrf(request, csrf)
        user = sessions.current(request)
        sessions.users.record(user.actor, "logout", user.username)
        sessions.close(request)
        return RedirectResponse("/login", status_code=303)

