"""The API token guard of ``vipflow web`` (producers/web/auth.py) on the real app and a SQLite ledger.

Every operation that needs a bearer token answers 401 without one and 403 with a token lacking its
scope, before any of the body is read: the body sent here is not JSON, so a 400/422 would mean it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel

from producers.web.app import create_app
from producers.web.auth import Guard, check_guarded, require
from worker.config import Settings
from worker.ledger import Ledger
from worker.ledger.api_tokens import TokenStore

SCOPES = ("sessions", "status", "labels")


def TestClient(app: FastAPI) -> Any:  # noqa: N802 - starlette's TestClient, imported past its httpx warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient as Client
    return Client(app)


@pytest.fixture
def app(sqlite_url: str) -> Iterator[FastAPI]:
    with Ledger.open(sqlite_url) as ledger:
        yield create_app(Settings(), ledger=ledger, vip=object())  # type: ignore[arg-type]


def guarded(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, path, scope) of every operation in the OpenAPI document that needs a token."""
    out = []
    for route in app.router.routes:
        scope = next((d.dependency.scope for d in getattr(route, "dependencies", ())
                      if hasattr(d.dependency, "scope")), None)
        if scope is not None:
            out += [(m, route.path.replace("{transaction_id}", "tx1"), scope) for m in route.methods]  # type: ignore[attr-defined]
    return out


def test_every_api_operation_is_seen_by_the_guard(app: FastAPI) -> None:
    found = {(m, p) for m, p, _ in guarded(app)}
    assert {("POST", "/api/v1/labels"), ("POST", "/labels"), ("POST", "/api/v1/sessions"),
            ("GET", "/api/v1/transactions/tx1")} <= found
    documented = {(m.upper(), p.replace("{transaction_id}", "tx1")) for p, ops in app.openapi()["paths"].items()
                  for m, op in ops.items() if op.get("security")}
    assert documented == found


@pytest.mark.parametrize("body", [b"{}", b"not json {"])
def test_a_token_lacking_the_scope_gets_403_before_the_body_is_read(app: FastAPI, body: bytes) -> None:
    client = TestClient(app)
    store = TokenStore(app.state.ledger.engine)
    tokens = {scope: store.create(f"no-{scope}-{len(body)}", [s for s in SCOPES if s != scope], "test")
              for scope in SCOPES}
    for method, path, scope in guarded(app):
        token = tokens[scope]
        answer = client.request(method, path, content=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json() == {"error": f"token 'no-{scope}-{len(body)}' lacks the {scope!r} scope; "
                                          "create one that has it"}
        anonymous = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.headers["WWW-Authenticate"] == "Bearer"


class _Body(BaseModel):
    labels: list[int]


def _app_with_an_included_route(sqlite_url: str) -> tuple[FastAPI, Ledger]:
    ledger = Ledger.open(sqlite_url)
    app = FastAPI()
    app.state.tokens = TokenStore(ledger.engine)
    app.add_middleware(Guard, api=app, max_body=1000)
    router = APIRouter()

    @router.post("/hidden", dependencies=[Depends(require("labels"))])
    def hidden(body: _Body) -> dict[str, Any]:
        return {}

    app.include_router(router)
    return app, ledger


def test_a_route_the_guard_cannot_see_is_refused_when_the_app_is_built(sqlite_url: str) -> None:
    app, ledger = _app_with_an_included_route(sqlite_url)
    with ledger, pytest.raises(RuntimeError, match="cannot see: POST /hidden"):
        check_guarded(app)


def test_a_route_the_guard_cannot_see_still_refuses_rather_than_validate_the_body(sqlite_url: str) -> None:
    """Fail closed: the route's own dependency answers 401 (the guard never authenticated), never 422."""
    app, ledger = _app_with_an_included_route(sqlite_url)
    with ledger:
        token = TokenStore(ledger.engine).create("status-only", ["status"], "test")
        answer = TestClient(app).post("/hidden", json={}, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, answer.text
