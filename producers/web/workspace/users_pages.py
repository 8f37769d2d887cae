"""The admin's users page: list, add and disable workspace users (``vipflow users`` does the same and more)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from producers.web.workspace.session import PageError, Sessions, check_csrf
from worker.errors import InputError
from worker.ledger.users import User, UserRefused
from worker.review_roles import (
    MAX_AMOUNT,
    MIN_LIMIT,
    Forbidden,
    Permission,
    Role,
    check_limit,
    parse_limit,
    parse_role,
    require,
)

CsrfField = Annotated[str, Form(alias="csrf")]


def add_routes(router: APIRouter, sessions: Sessions, render: Callable[..., HTMLResponse],
               back: Callable[..., RedirectResponse]) -> None:
    """``/users`` (GET, POST) and ``/users/{name}/disable`` on ``router``, for admins only."""
    settings = sessions.settings

    def users_html(request: Request, user: User, status: int = 200, **context: Any) -> HTMLResponse:
        """The users page: every user, and the form to add one (``form``: what was typed, shown again)."""
        return render(request, "users.html", user, status, users=sessions.users.listing(),
                      roles=[r.value for r in Role], default_limit=settings.review.reviewer_limit,
                      limit_range=f"{MIN_LIMIT:,.2f} to {MAX_AMOUNT:,.2f}", **context)

    # --- users (admin) -----------------------------------------------------------------------------

    @router.get("/users", response_class=HTMLResponse)
    def users_page(request: Request) -> Response:
        user = sessions.current(request)
        try:
            require(user.role, Permission.MANAGE_USERS, "manage users")
        except Forbidden as exc:
            raise PageError(403, str(exc)) from None
        return users_html(request, user)

    @router.post("/users", response_class=HTMLResponse)
    def users_add(request: Request, csrf: CsrfField = "", username: Annotated[str, Form()] = "",
                  role: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
                  limit: Annotated[str, Form()] = "") -> Response:
        check_csrf(request, csrf)
        user = sessions.current(request)
        try:
            require(user.role, Permission.MANAGE_USERS, "manage users")
        except Forbidden as exc:
            raise PageError(403, str(exc)) from None
        try:
            role_asked = parse_role(role)
            amount = check_limit(role_asked, parse_limit(limit, "limit"), "limit") if limit.strip() else None
            added = sessions.users.add(username.strip(), role_asked, password, user.actor, limit=amount)
        except (UserRefused, InputError) as exc:
            # Shown again with what was typed (never the password) and the problem; nothing was added.
            return users_html(request, user, 400, flash={"kind": "error", "text": str(exc)},
                              form={"username": username.strip(), "role": role, "limit": limit.strip()})
        return back(request, "/users", f"user {added.username} added as {added.role.value}")

    @router.post("/users/{username}/disable")
    def users_disable(request: Request, username: str, csrf: CsrfField = "") -> Response:
        check_csrf(request, csrf)
        user = sessions.current(request)
        try:
            require(user.role, Permission.MANAGE_USERS, "manage users")
        except Forbidden as exc:
            raise PageError(403, str(exc)) from None
        if username == user.username:
            return back(request, "/users", "you cannot disable yourself; ask another admin", "error")
        try:
            sessions.users.disable(username, user.actor)
        except UserRefused as exc:
            return back(request, "/users", str(exc), "error")
        return back(request, "/users", f"user {username} disabled; their sessions have ended")
