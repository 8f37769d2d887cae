"""Property-based: schemathesis generates requests from `vipflow web`'s own OpenAPI document and finds no 5xx.

The service runs for real (a process) against the simulator's VIP Connect and a ledger on PostgreSQL
when one answers (always under CI; NUL bytes and other text PostgreSQL refuses are then exercised),
else SQLite. Requests carry a token with every scope, so the handlers behind authentication are reached.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from sqlalchemy import text

from tests.integration.harness import Stack
from worker.ledger.api_tokens import TokenStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def web() -> Iterator[tuple[Stack, str]]:
    """The simulator and `vipflow web`, and a token with every scope."""
    from tests.conftest import TEST_REDIS_URL, stack_database

    database_url = stack_database("_api")  # else the stack's own SQLite file
    stack = Stack(TEST_REDIS_URL, database_url)
    try:
        stack.start_sim()
        stack.start_web()
        token = TokenStore(stack.ledger.engine).create("fuzz", ["sessions", "status", "labels"], "test")
        yield stack, token
    finally:
        stack.stop()


def test_no_request_gets_a_server_error(web: tuple[Stack, str]) -> None:
    """No request the document allows, nor one it forbids, gets a 5xx from the service."""
    stack, token = web
    # Driven by hand rather than with schemathesis' pytest plugin, which pytest 9 no longer supports.
    api = schemathesis.openapi.from_url(f"{stack.web_url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /api/v1/sessions", "GET /api/v1/transactions/{transaction_id}"}
    headers = {"Authorization": f"Bearer {token}"}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=40, deadline=None, database=None, derandomize=True,  # the same cases every run
                      suppress_health_check=list(HealthCheck))
            def call(case: Any) -> None:
                case.call_and_validate(base_url=stack.web_url, headers=headers, checks=[not_a_server_error])

            call()
    with stack.ledger.engine.connect() as conn:  # the handlers behind authentication were reached
        statuses = set(conn.execute(text("SELECT DISTINCT status FROM api_token_uses")).scalars())
    assert {201, 422} <= statuses and max(statuses) < 500, statuses
