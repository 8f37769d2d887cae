"""Bearer API tokens for ``vipflow web``: 401 without a live token, 403 without the route's scope.

:class:`Guard` is a pure ASGI middleware in front of the routes: it finds the route, checks the
token (before one byte of the body is read, so an anonymous caller can make the service read
nothing), bounds the body (``web.max_body_bytes``: 413 past it, unread when Content-Length says so),
and records each use of a live token in the ledger (method, route template, status), whatever the
answer was. The route's :class:`Require` dependency names the scope (and puts the bearer scheme in
the OpenAPI document); it answers the token's name, and checks the scope again itself, so that a route the
Guard could not see answers 401/403 rather than serve (:func:`check_guarded`, called once the app is built,
refuses such a route outright: an API route must be added on the app itself, not through an included router).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.errors import LedgerUnavailable
from worker.ledger.api_tokens import TokenStore

bearer_scheme = HTTPBearer(auto_error=False, description="an API token from `vipflow tokens create`")
_HOW = "send Authorization: Bearer <token from `vipflow tokens create`>"


def _unauthorized(problem: str) -> HTTPException:
    return HTTPException(401, f"{problem}; {_HOW}", headers={"WWW-Authenticate": "Bearer"})


class Require:
    """A route's dependency: the route needs a live token holding ``scope`` (checked by :class:`Guard`
    before the body is read); the token's name."""

    def __init__(self, scope: str):
        self.scope = scope

    async def __call__(self, request: Request,
                       credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]) -> str:
        name = getattr(request.state, "token_name", None)
        if name is None:  # never without the Guard in front; refuse rather than serve unauthenticated
            raise _unauthorized("no API token")
        if self.scope not in getattr(request.state, "token_scopes", ()):  # fail closed, as the Guard does
            raise HTTPException(403, f"token {name!r} lacks the {self.scope!r} scope; create one that has it")
        return str(name)


def require(scope: str) -> Require:
    """The dependency for a route that needs ``scope``."""
    return Require(scope)


def check_guarded(api: FastAPI) -> None:
    """Raise RuntimeError naming every operation that needs a bearer token (in ``api``'s OpenAPI document)
    that :class:`Guard` cannot see (not a route of ``api`` itself carrying :class:`Require`, e.g. one added
    through an included router): its token would be checked only after the body was read and validated."""
    seen = {(method, route.path) for route in api.router.routes if isinstance(route, APIRoute)
            and any(isinstance(d.dependency, Require) for d in route.dependencies) for method in route.methods or ()}
    hidden = sorted(f"{method.upper()} {path}" for path, operations in api.openapi().get("paths", {}).items()
                    for method, operation in operations.items()
                    if isinstance(operation, dict) and operation.get("security")
                    and (method.upper(), path) not in seen)
    if hidden:
        raise RuntimeError(f"routes the API token guard cannot see: {', '.join(hidden)}; add them on the app "
                           "with dependencies=[Depends(require(scope))]")


def _bearer(scope: Scope) -> str | None:
    value = Headers(scope=scope).get("authorization", "")
    kind, _, credentials = value.partition(" ")
    credentials = credentials.strip()
    return credentials if kind.lower() == "bearer" and credentials else None


class Guard:
    """Authenticate, bound the body and record the token's use, in front of ``api``'s routes."""

    def __init__(self, app: ASGIApp, *, api: FastAPI, max_body: int):
        self.app, self.api, self.max_body = app, api, max_body

    def _route(self, scope: Scope) -> tuple[APIRoute, str] | None:
        """The route this request goes to and the scope it needs; None when it needs none (or there is none)."""
        for route in self.api.router.routes:
            if isinstance(route, APIRoute) and route.matches(scope)[0] == Match.FULL:
                needed = next((d.dependency.scope for d in route.dependencies if isinstance(d.dependency, Require)),
                              None)
                return (route, needed) if needed is not None else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._route(scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        route, needed = found

        async def answer(status: int, message: str, to: Send = send) -> None:
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            await JSONResponse({"error": message}, status_code=status, headers=headers)(scope, receive, to)

        tokens: TokenStore = self.api.state.tokens
        credentials = _bearer(scope)
        if credentials is None:
            await answer(401, f"no API token; {_HOW}")
            return
        try:
            token = await run_in_threadpool(tokens.authenticate, credentials)
        except LedgerUnavailable as exc:
            await answer(503, str(exc))
            return
        if token is None:
            await answer(401, f"the API token is unknown or revoked; {_HOW}")
            return
        scope.setdefault("state", {}).update(token_name=token.name, token_scopes=frozenset(token.scopes))
        replaced = False

        async def recorded(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                try:
                    await run_in_threadpool(tokens.record_use, token.name, scope["method"], route.path,
                                            message["status"])
                except LedgerUnavailable:
                    replaced = True
                    await answer(503, "the ledger is unavailable; the request's use could not be recorded, "
                                      "try again")
                    return
            elif replaced:
                return
            await send(message)

        if needed not in token.scopes:
            await answer(403, f"token {token.name!r} lacks the {needed!r} scope; create one that has it", recorded)
            return
        body = await self._body(scope, receive)
        if body is None:
            await answer(413, f"the body is larger than {self.max_body} bytes (web.max_body_bytes)", recorded)
            return
        await self.app(scope, _replay(body, receive), recorded)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None once Content-Length or the bytes read pass the limit (read no further)."""
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client left: the app finds out when it reads
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed

