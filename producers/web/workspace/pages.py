"""The review workspace's pages: thin handlers over ``worker.review_workspace`` and ``worker.review_audit``.

Each handler finds the logged-in user (``session.Sessions.current``), checks the CSRF token of a form,
calls one service function and renders a template, or redirects (303) back with a one-line message
(post/redirect/get: a reload never posts twice). Handlers are plain functions: FastAPI runs them in
its thread pool, beside the blocking ledger, Redis and VIP Connect calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from producers.web.workspace import login_pages, txpage, users_pages
from producers.web.workspace.session import LoginLimiter, PageError, Sessions, check_csrf, csrf_token
from rules.money import format_amount
from worker import review_audit, review_claims, review_workspace
from worker.errors import InputError
from worker.ledger.users import User
from worker.pipeline import Deps
from worker.review_roles import Forbidden, Permission, Role, can, decision_limit, needs_four_eyes, require
from worker.review_service import NotInReview, ReviewActionFailed
from worker.store.locks import LockBusy
from worker.wording import a

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
CsrfField = Annotated[str, Form(alias="csrf")]


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def _when(epoch: Any) -> str:
    from datetime import UTC, datetime

    try:
        value = float(epoch)
    except (TypeError, ValueError):
        return str(epoch)
    if value > 1e11:
        value /= 1000
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


TEMPLATES.env.filters.update(age=_age, when=_when, money=format_amount, article=a)  # article: "an admin"
TEMPLATES.env.globals.update(can=can, P=Permission)


def build_router(sessions: Sessions, deps_of: Callable[[], Deps], limiter: Callable[[], LoginLimiter]) -> APIRouter:
    """The workspace's routes: ``/``, ``/queue``, ``/tx/{id}``, ``/audit`` here; ``/login*`` (``login_pages``)
    and ``/users`` (``users_pages``)."""
    router = APIRouter(include_in_schema=False)
    settings = sessions.settings

    def render(request: Request, name: str, user: User | None, status: int = 200, **context: Any) -> HTMLResponse:
        flash = request.session.pop("flash", None)
        sso = settings.web.oidc if settings.web.oidc.issuer else None
        return TEMPLATES.TemplateResponse(request, name, {"user": user, "csrf": csrf_token(request), "flash": flash,
                                                          "oidc": sso, **context}, status_code=status)

    def back(request: Request, to: str, message: str, kind: str = "ok") -> RedirectResponse:
        request.session["flash"] = {"kind": kind, "text": message}
        return RedirectResponse(to, status_code=303)

    login_pages.add_routes(router, sessions, limiter, render)
    users_pages.add_routes(router, sessions, render, back)

    @router.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        user = sessions.current(request)
        return RedirectResponse("/users" if user.role == Role.ADMIN else "/queue", status_code=303)

    # --- the queue ---------------------------------------------------------------------------------

    @router.get("/queue", response_class=HTMLResponse)
    def queue_page(request: Request) -> Response:
        user = sessions.current(request)
        params = dict(request.query_params)
        try:
            filters = review_workspace.QueueFilter.parse(params)
        except InputError as exc:
            raise PageError(400, str(exc)) from None
        deps = deps_of()
        rows = review_workspace.queue(deps, user.reviewer(), filters)
        total, oldest, overdue = deps.ledger.review_stats(settings.review.max_age_s)
        rules = sorted({m for row in rows for m in row.item.matched})
        return render(request, "queue.html", user, rows=rows, params=params, total=total, overdue=overdue,
                      oldest=oldest, rules=rules, max_age_s=settings.review.max_age_s,
                      four_eyes=settings.review.four_eyes_amount,
                      needs_four_eyes=lambda a: needs_four_eyes(_dec(a), settings.review.four_eyes_amount))

    @router.post("/queue/claim-next")
    def claim_next(request: Request, csrf: CsrfField = "", type: Annotated[str, Form()] = "",
                   rule: Annotated[str, Form()] = "", min: Annotated[str, Form()] = "",
                   max: Annotated[str, Form()] = "") -> Response:
        check_csrf(request, csrf)
        user = sessions.current(request)
        params = {"type": type, "rule": rule, "min": min, "max": max}
        try:
            filters = review_workspace.QueueFilter.parse(params)
            found = review_workspace.claim_next(deps_of(), user.reviewer(), filters)
        except InputError as exc:
            return back(request, "/queue", str(exc), "error")
        if found is None:
            return back(request, "/queue?" + urlencode({k: v for k, v in params.items() if v}),
                        "nothing left to claim that you may decide", "error")
        return back(request, f"/tx/{quote(found, safe='')}", f"you claimed {found}")

    # --- a transaction -----------------------------------------------------------------------------

    def tx_page(request: Request, user: User, transaction_id: str, reveal: str | None = None,
                status: int = 200) -> HTMLResponse:
        deps = deps_of()
        told = txpage.story(deps.ledger, transaction_id)
        if told is None:
            raise PageError(404, f"vipflow has no transaction {transaction_id}")
        holder = review_claims.touch(deps, user.reviewer(), transaction_id)
        record = told["record"]
        amount = _dec(record.get("amount"))
        stored = deps.ledger.load(transaction_id)
        from worker.review_service import first_approval, interrupted

        first = first_approval(stored.record) if stored is not None else None
        waiting = stored is not None and (str(stored.record.state) == "review" or interrupted(stored.record))
        limit = decision_limit(user.reviewer(), settings.review.reviewer_limit)
        return render(request, "tx.html", user, status, tx=told, txid=transaction_id, holder=holder, waiting=waiting,
                      first=first, four_eyes=needs_four_eyes(amount, settings.review.four_eyes_amount),
                      within_limit=limit is None or (amount is not None and amount <= limit), limit=limit,
                      reasons=review_workspace.REASONS,
                      fields=txpage.patron_fields(deps.ledger, transaction_id, reveal), revealed=reveal)

    @router.get("/tx/{transaction_id}", response_class=HTMLResponse)
    def tx_get(request: Request, transaction_id: str) -> Response:
        user = sessions.current(request)
        return tx_page(request, user, transaction_id)

    def act(request: Request, transaction_id: str, work: Callable[[Deps, User], str]) -> Response:
        user = sessions.current(request)
        here = f"/tx/{quote(transaction_id, safe='')}"
        try:
            message = work(deps_of(), user)
        except Forbidden as exc:
            raise PageError(403, str(exc)) from None
        except (InputError, NotInReview, ReviewActionFailed) as exc:
            return back(request, here, str(exc), "error")
        except LockBusy:
            return back(request, here, f"someone else is acting on {transaction_id} right now; look again in a "
                                       "moment", "error")
        return back(request, here, message)

    @router.post("/tx/{transaction_id}/claim")
    def tx_claim(request: Request, transaction_id: str, csrf: CsrfField = "") -> Response:
        check_csrf(request, csrf)
        return act(request, transaction_id, lambda deps, user: (
            review_claims.claim(deps, user.reviewer(), transaction_id), f"you claimed {transaction_id}")[1])

    @router.post("/tx/{transaction_id}/release")
    def tx_release(request: Request, transaction_id: str, csrf: CsrfField = "") -> Response:
        check_csrf(request, csrf)

        def work(deps: Deps, user: User) -> str:
            review_claims.release(deps, user.reviewer(), transaction_id)
            return f"you released your claim on {transaction_id}"
        return act(request, transaction_id, work)

    @router.post("/tx/{transaction_id}/approve")
    def tx_approve(request: Request, transaction_id: str, csrf: CsrfField = "",
                   reason: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "") -> Response:
        check_csrf(request, csrf)

        def work(deps: Deps, user: User) -> str:
            rec = review_workspace.approve(deps, user.reviewer(), transaction_id, reason, note)
            last = rec.actions[-1] if rec.actions else None
            if last is not None and last.name == "review_first":
                return (f"first approval of {transaction_id} recorded; a second, different senior reviewer must "
                        "approve before VIP Connect is called")
            return f"{transaction_id} approved through VIP Connect ({rec.state})"
        return act(request, transaction_id, work)

    @router.post("/tx/{transaction_id}/reject")
    def tx_reject(request: Request, transaction_id: str, csrf: CsrfField = "",
                  reason: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "") -> Response:
        check_csrf(request, csrf)

        def work(deps: Deps, user: User) -> str:
            rec = review_workspace.reject(deps, user.reviewer(), transaction_id, reason, note)
            return f"{transaction_id} rejected ({rec.state}); any hold was released"
        return act(request, transaction_id, work)

    @router.post("/tx/{transaction_id}/reveal", response_class=HTMLResponse)
    def tx_reveal(request: Request, transaction_id: str, csrf: CsrfField = "",
                  field: Annotated[str, Form()] = "") -> Response:
        check_csrf(request, csrf)
        user = sessions.current(request)
        try:
            review_workspace.reveal(deps_of(), user.reviewer(), transaction_id, field)
        except Forbidden as exc:
            raise PageError(403, str(exc)) from None
        except (InputError, NotInReview) as exc:
            raise PageError(400, str(exc)) from None
        # Shown in this answer only (never cached, never in a redirect's URL); recorded before it is shown.
        return tx_page(request, user, transaction_id, reveal=field.strip())

    # --- the audit ---------------------------------------------------------------------------------

    def audit_rows(request: Request, limit: int) -> tuple[User, dict[str, str], list[review_audit.AuditRow]]:
        user = sessions.current(request)
        require(user.role, Permission.VIEW, "see the audit")
        params = dict(request.query_params)
        try:
            filters = review_audit.AuditFilter.parse(params)
        except InputError as exc:
            raise PageError(400, str(exc)) from None
        return user, params, review_audit.audit(deps_of().ledger.engine, filters, limit=limit)

    @router.get("/audit", response_class=HTMLResponse)
    def audit_page(request: Request) -> Response:
        user, params, rows = audit_rows(request, 500)
        return render(request, "audit.html", user, rows=rows, params=params, csv_query=urlencode(params))

    @router.get("/audit.csv")
    def audit_csv(request: Request) -> Response:
        _, _, rows = audit_rows(request, review_audit.MAX_ROWS)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        return StreamingResponse(review_audit.to_csv(rows), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="vipflow-audit-{stamp}.csv"'})

    return router


def _dec(text: Any) -> Decimal | None:
    try:
        return Decimal(str(text)) if text is not None else None
    except InvalidOperation:
        return None
