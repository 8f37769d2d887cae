"""Bearer API tokens for ``vipflow web``: 401 without a live token, 403 without the route's scope.

The dependency leaves the token's name on the request; the app's middleware then records the
use (method, route template, status) in the ledger, whatever the answer was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from worker.ledger.api_tokens import ApiToken, TokenStore

bearer_scheme = HTTPBearer(auto_error=False, description="an API token from `vipflow tokens create`")


def _unauthorized(problem: str) -> HTTPException:
    return HTTPException(401, f"{problem}; send Authorization: Bearer <token from `vipflow tokens create`>",
                         headers={"WWW-Authenticate": "Bearer"})


def require(scope: str) -> Callable[..., object]:
    """A dependency that admits a live token holding ``scope``; the token as listed."""

    async def check(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]) -> ApiToken:
        if credentials is None:
            raise _unauthorized("no API token")
        tokens: TokenStore = request.app.state.tokens
        token = await run_in_threadpool(tokens.authenticate, credentials.credentials)
        if token is None:
            raise _unauthorized("the API token is unknown or revoked")
        request.state.token_name = token.name
        if scope not in token.scopes:
            raise HTTPException(403, f"token {token.name!r} lacks the {scope!r} scope; create one that has it")
        return token

    return check
