"""The admin's users page: list, add and disable workspace users (``vipflow users`` does the same and more)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from producers.web.workspace.session import PageError, Sessions, check_csrf
from worker.errors import InputError
from worker.ledger.users import UserRefused
from worker.review_roles import Forbidden, Permission, Role, parse_amount, parse_role, require

CsrfField = Annotated[str, Form(alias="csrf")]


def add_routes(router: APIRouter, sessions: Sessions, render: Callable[..., HTMLResponse],
               back: Callable[..., RedirectResponse]) -> None:
    """``/users`` (GET, POST) and ``/users/{name}/disable`` on ``router``, for admins only."""
    settings = sessions.settings

    # --- users (admin) -----------------------------------------------------------------------------

    @router.get("/users", response_class=HTMLResponse)
    def users_page(request: Request) -> Response:
        user = sessions.current(request)
        try:
            require(user.role, Permission.MANAGE_USERS, "manage users")
        except Forbidden as exc:
            raise PageError(403, str(exc)) from None
        return render(request, "users.html", user, users=sessions.users.listing(), roles=[r.value for r in Role],
                      default_limit=settings.review.reviewer_limit)

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
            added = sessions.users.add(username.strip(), parse_role(role), password, user.actor,
                                       limit=parse_amount(limit, "limit") if limit.strip() else None)
        except (UserRefused, InputError) as exc:
            return back(request, "/users", str(exc), "error")
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
