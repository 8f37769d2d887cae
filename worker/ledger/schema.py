"""The ledger's database: the engine from ``database.url``, and its schema through Alembic.

SQLite (the embedded default) is upgraded automatically when a process opens it.
On PostgreSQL a process refuses to start on a schema older than its code and
names the command to run (``vipflow db upgrade``): a migration there is an
operator's step, taken once, not something every worker races to do.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from worker.errors import ConfigError, LedgerUnavailable, NoLedger, SchemaOutdated, reason

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Alembic narrates every step at INFO; `vipflow db upgrade` prints the revisions itself.
logging.getLogger("alembic").setLevel(logging.WARNING)
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers never block the writer; several worker processes share one file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; a crash of the OS may lose
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # the last commits, not corrupt
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str, *, pool_size: int = 32, create: bool = True) -> Engine:
    """An engine on ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``); ConfigError when it is
    not a database URL vipflow can use. SQLite's folder and file are created when missing; with
    ``create=False`` (the commands that only read) a missing SQLite file raises NoLedger instead, and
    nothing is created. A forked child (Celery's prefork pool) drops the pooled connections it inherited,
    as SQLAlchemy advises, so parent and child never share a socket."""
    engine = _make_engine(url, pool_size, create)
    os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
    return engine


def sqlite_file(url: str) -> str | None:
    """The absolute path of the file a ``sqlite:///PATH`` URL names (a relative PATH: from the current
    directory); None for an in-memory SQLite or another database."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[1] if "///" in url else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return os.path.abspath(path)


def require_ledger(url: str) -> None:
    """NoLedger when ``url`` is a SQLite file that does not exist (nothing is created); else nothing."""
    path = sqlite_file(url)
    if path is not None and not os.path.isfile(path):
        raise NoLedger(path)


def _make_engine(url: str, pool_size: int, create: bool) -> Engine:
    if not create:
        require_ledger(url)
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, poolclass=NullPool if not path or path == ":memory:" else None,
                                   connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        if url.startswith("postgresql"):
            if url.startswith("postgresql://") or url.startswith("postgresql+psycopg2"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3 is the driver we ship
            # Connections are kept (a thread pool of 16-32 holds as many); no ping per checkout (a round
            # trip each): a connection found dead fails its operation, which is retried, and the pool is
            # refreshed.
            return create_engine(url, pool_size=pool_size, max_overflow=8, pool_recycle=1800,
                                 connect_args={"connect_timeout": 5})
    except (SQLAlchemyError, ValueError, OSError) as exc:
        raise ConfigError("database.url", f"cannot be used ({reason(exc)}); "
                                          "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB") from None
    raise ConfigError("database.url", "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")


def shown(engine: Engine) -> str:
    """The engine's URL fit for a message: the password hidden (host and database are the operator's own)."""
    return str(engine.url.render_as_string(hide_password=True))


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration this code ships."""
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(None)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None: an empty database); LedgerUnavailable when it does not answer."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise LedgerUnavailable(f"the ledger's database at {shown(engine)} does not answer ({reason(exc)}); "
                                "check database.url and that the database is up") from None


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Apply the migrations up to ``revision``; returns (before, after)."""
    from alembic import command

    before = current_revision(engine)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), revision)
    except SQLAlchemyError as exc:
        raise LedgerUnavailable(f"the ledger's migration of {shown(engine)} failed ({reason(exc)})") from None
    return before, current_revision(engine) or ""


_checked: set[str] = set()
_check_lock = threading.Lock()


def ensure_schema(engine: Engine) -> None:
    """Make sure the schema is the code's: upgrade SQLite at once; on PostgreSQL raise SchemaOutdated
    naming ``vipflow db upgrade`` when it is older (or newer) than the code."""
    key = str(engine.url)
    with _check_lock:
        if key in _checked:
            return
        head, current = head_revision(), current_revision(engine)
        if current != head:
            if engine.dialect.name == "sqlite":
                with _sqlite_migration_lock(engine):  # another process may be creating the same file's tables
                    if current_revision(engine) != head:
                        upgrade(engine)
            elif current is None or _is_older(current, head):
                raise SchemaOutdated(
                    f"the ledger's schema is at {current or 'nothing (an empty database)'} and this code needs "
                    f"{head}: run `vipflow db upgrade` (with the same configuration) before starting")
            else:
                raise SchemaOutdated(f"the ledger's schema is at {current}, newer than this code ({head}): "
                                     "run the vipflow version that migrated it")
        _checked.add(key)


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock, across processes, on ``<database file>.lock`` while a SQLite ledger is migrated:
    a worker, the web service and a CLI command starting together on a fresh file take turns instead of
    racing to create the same tables ("table ... already exists")."""
    import fcntl

    path = engine.url.database
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_older(current: str, head: str) -> bool:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(None))
    return any(rev.revision == current for rev in script.walk_revisions("base", head))


def create_database(url: str, *, fresh: bool = False, migrate: bool = False) -> None:
    """Make sure the PostgreSQL database named in ``url`` exists (with ``fresh``: dropped and created
    again, its sessions ended), and with ``migrate`` apply the ledger's migrations to it. For tests,
    benchmarks and first installs; never called by a running vipflow. ConfigError when the name is not a
    plain identifier; LedgerUnavailable when the server does not answer."""
    import re

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = parsed.database or ""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError("database.url", f"{name!r} is not a plain database name (letters, digits, _)")
    admin = create_engine(parsed.set(drivername="postgresql+psycopg", database="postgres"),
                          isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            if fresh:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError as exc:
        raise LedgerUnavailable(f"cannot create database {name} ({reason(exc)}); "
                                "check that PostgreSQL is up") from None
    finally:
        admin.dispose()
    if migrate:
        engine = make_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()


def ping(engine: Engine) -> None:
    """One round trip; LedgerUnavailable when the database does not answer."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise LedgerUnavailable(f"the ledger's database at {shown(engine)} does not answer ({reason(exc)}); "
                                "check database.url and that the database is up") from None
