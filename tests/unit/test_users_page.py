"""The admin's /users form (producers.web.workspace.users_pages) through the real app in-process (httpx over
ASGI): a bad limit, or a limit for a role without one, is the form shown again with the problem (400) and
nothing added. A real Redis (the login limiter) and an SQLite ledger; no server process."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from worker.config import DatabaseSettings, RedisSettings, Settings, VipSettings, WebSettings
from worker.ledger import Ledger
from worker.ledger.users import UserStore
from worker.review_roles import Role

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
Scenario = Callable[[httpx.AsyncClient], Awaitable[None]]


@pytest.fixture
def site(redis_url: str, sqlite_url: str) -> Iterator[tuple[Any, UserStore]]:
    """``vipflow web``'s app on a fresh ledger holding the admin ``ada``, and that ledger's user store (VIP
    Connect is configured only because the app builds its client; these pages never call it)."""
    from producers.web.app import create_app

    settings = Settings(redis=RedisSettings(url=redis_url, key_prefix="vipflow-test-users-page"),
                        database=DatabaseSettings(url=sqlite_url),
                        vip=VipSettings(secret_key1=base64.b64encode(b"k" * 32).decode(), operator_id="OP1"),
                        web=WebSettings(session_secret="a-test-secret-of-at-least-32-characters!"))
    with Ledger.open(sqlite_url, create=True) as ledger:
        users = UserStore(ledger.engine)
        users.add("ada", Role.ADMIN, PASSWORD, "os:test")
        yield create_app(settings, ledger=ledger), users


def as_admin(app: Any, scenario: Scenario) -> None:
    """Run ``scenario`` with a client logged in as ``ada`` through the login form."""
    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            token = CSRF.search((await client.get("/login")).text)
            assert token is not None
            done = await client.post("/login", data={"csrf": token[1], "username": "ada", "password": PASSWORD,
                                                     "next": "/users"})
            assert done.status_code == 303, done.text
            await scenario(client)
    asyncio.run(run())


async def add_user(client: httpx.AsyncClient, **form: str) -> httpx.Response:
    """Post the add-a-user form (with the page's CSRF token and a good password)."""
    token = CSRF.search((await client.get("/users")).text)
    assert token is not None
    return await client.post("/users", data={"csrf": token[1], "password": PASSWORD, **form})


@pytest.mark.parametrize("limit", ["1e309", "99999999999999999999999999999", "1e20"])
def test_a_limit_out_of_range_shows_the_form_again_with_the_range(site: tuple[Any, UserStore], limit: str) -> None:
    """The form's limit 1e309 was an HTTP 500 (decimal.InvalidOperation): now 400, the page names the limit and
    its range, keeps what was typed (never the password), and no user is added."""
    app, users = site

    async def scenario(client: httpx.AsyncClient) -> None:
        answer = await add_user(client, username="frank", role="reviewer", limit=limit)
        assert answer.status_code == 400
        page = answer.text
        assert f"limit: &#39;{limit}&#39; is not an amount from 0.01 to 999,999,999.99 dollars" in page
        assert 'value="frank"' in page and f'value="{limit}"' in page and PASSWORD not in page
        assert "<option selected>reviewer</option>" in page
    as_admin(app, scenario)
    assert [u.username for u in users.listing()] == ["ada"]


@pytest.mark.parametrize("role", ["senior", "viewer", "admin"])
def test_a_limit_for_a_role_without_one_is_refused(site: tuple[Any, UserStore], role: str) -> None:
    """A limit given with a senior, viewer or admin meant nothing and was kept: 400 saying limits are for
    reviewers; no user added. Without the limit the same user is added, and a reviewer keeps theirs."""
    app, users = site

    async def scenario(client: httpx.AsyncClient) -> None:
        answer = await add_user(client, username="frank", role=role, limit="100")
        assert answer.status_code == 400 and "limit applies to reviewers only" in answer.text
        assert users.get("frank") is None
        assert (await add_user(client, username="frank", role=role)).status_code == 303
        assert (await add_user(client, username="rita", role="reviewer", limit="1500.50")).status_code == 303
    as_admin(app, scenario)
    added = {u.username: (u.role.value, u.review_limit) for u in users.listing()}
    assert added["frank"] == (role, None) and added["rita"] == ("reviewer", Decimal("1500.50"))


def test_the_pages_give_a_role_its_article() -> None:
    """The transaction page told an admin "a admin does not decide": the templates' article filter says
    "an admin", "a viewer", and tx.html uses it."""
    from producers.web.workspace.pages import TEMPLATES

    said = TEMPLATES.env.from_string("{{ 'admin'|article }}, {{ 'viewer'|article }}").render()
    assert said == "an admin, a viewer"
    source = TEMPLATES.env.loader.get_source(TEMPLATES.env, "tx.html")[0]  # type: ignore[union-attr]
    assert "{{ user.role.value|article }} does not decide" in source
