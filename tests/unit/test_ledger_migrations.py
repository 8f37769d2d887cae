"""The ledger's migrations: an empty database and the previous schema both upgrade to the code's head."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select, text

from tests.conftest import ROOT, archived_note
from worker.errors import SchemaOutdated
from worker.ledger import Ledger
from worker.ledger import schema as schema_module
from worker.ledger import tables as t
from worker.ledger.schema import current_revision, ensure_schema, head_revision, make_engine, upgrade

PREVIOUS = "0001"  # the schema before the append-only triggers and prune_runs


@pytest.fixture(autouse=True)
def _forget_checked_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    # ensure_schema remembers the URLs it checked, per process; these tests reuse URLs at other revisions.
    monkeypatch.setattr(schema_module, "_checked", set())


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database: a new SQLite file, or a PostgreSQL database of its own."""
    url = (f"sqlite:///{tmp_path / 'empty.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_empty_url")))
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _pg_triggers(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars())


def _sqlite_triggers(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())


def test_an_empty_database_upgrades_to_head(empty_engine: Engine) -> None:
    """upgrade on an empty database creates every table of the code's schema and says it went from nothing."""
    assert current_revision(empty_engine) is None
    before, after = upgrade(empty_engine)
    assert (before, after) == (None, head_revision())
    assert set(t.metadata.tables) <= set(inspect(empty_engine).get_table_names())


def test_upgrading_twice_changes_nothing(empty_engine: Engine) -> None:
    """A second upgrade finds the database at head and leaves it there."""
    upgrade(empty_engine)
    assert upgrade(empty_engine) == (head_revision(), head_revision())


def test_the_previous_schema_upgrades_and_keeps_its_rows(empty_engine: Engine) -> None:
    """A database at 0001 with a notification upgrades to head; the row survives and the triggers now exist."""
    assert upgrade(empty_engine, PREVIOUS) == (None, PREVIOUS)
    note = archived_note("1700000000000-0", "tx-1")
    Ledger(empty_engine).add_notification(note)  # the 0001 tables, written by today's code
    assert "prune_runs" not in inspect(empty_engine).get_table_names()
    assert upgrade(empty_engine) == (PREVIOUS, head_revision())
    assert Ledger(empty_engine).notification(note.entry_id) == note
    assert "prune_runs" in inspect(empty_engine).get_table_names()
    if empty_engine.dialect.name == "postgresql":
        assert {"events_append_only", "notifications_append_only"} <= _pg_triggers(empty_engine)
    else:
        assert {"events_no_update", "notifications_no_update"} <= _sqlite_triggers(empty_engine)


def test_postgresql_at_the_previous_schema_refuses_to_start(pg_empty_url: str) -> None:
    """ensure_schema on a PostgreSQL ledger at 0001 raises SchemaOutdated naming `vipflow db upgrade`."""
    engine = make_engine(pg_empty_url)
    try:
        upgrade(engine, PREVIOUS)
        with pytest.raises(SchemaOutdated, match="vipflow db upgrade") as caught:
            ensure_schema(engine)
        assert PREVIOUS in str(caught.value) and head_revision() in str(caught.value)
        assert current_revision(engine) == PREVIOUS  # nothing was migrated behind the operator's back
    finally:
        engine.dispose()


def test_an_empty_postgresql_refuses_to_start(pg_empty_url: str) -> None:
    """A process on an empty PostgreSQL database refuses to start, naming the command to run."""
    engine = make_engine(pg_empty_url)
    try:
        with pytest.raises(SchemaOutdated, match="vipflow db upgrade"):
            ensure_schema(engine)
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_sqlite_at_the_previous_schema_upgrades_itself(tmp_path: Path) -> None:
    """ensure_schema on an SQLite ledger at 0001 migrates it to head at once (the embedded default)."""
    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    try:
        upgrade(engine, PREVIOUS)
        ensure_schema(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_an_empty_sqlite_file_is_migrated_when_opened(sqlite_url: str) -> None:
    """Ledger.open on a new SQLite file leaves it at head, ready to write."""
    ledger = Ledger.open(sqlite_url)
    try:
        assert current_revision(ledger.engine) == head_revision()
        with ledger.engine.connect() as conn:
            assert conn.execute(select(t.prune_runs)).all() == []
    finally:
        ledger.engine.dispose()


def test_the_0002_schema_upgrades_to_sessions_and_tokens(empty_engine: Engine) -> None:
    """A database at 0002 with a notification upgrades to head: the row survives, the session and token
    tables exist, and token uses are append-only."""
    assert upgrade(empty_engine, "0002") == (None, "0002")
    note = archived_note("1700000000000-1", "tx-2")
    Ledger(empty_engine).add_notification(note)
    assert "patron_sessions" not in inspect(empty_engine).get_table_names()
    assert upgrade(empty_engine) == ("0002", head_revision())
    assert Ledger(empty_engine).notification(note.entry_id) == note
    assert {"patron_sessions", "api_tokens", "api_token_uses"} <= set(inspect(empty_engine).get_table_names())
    if empty_engine.dialect.name == "postgresql":
        assert "api_token_uses_append_only" in _pg_triggers(empty_engine)
    else:
        assert "api_token_uses_no_update" in _sqlite_triggers(empty_engine)


def test_the_0003_schema_upgrades_to_learned_cards(empty_engine: Engine) -> None:
    """A database at 0003 with a notification upgrades to head: the row survives and patron_cards exists,
    written by the transaction's write."""
    from worker.ledger.patron_cards import CardSeen, PatronCards
    from worker.ledger.record import TransactionRecord

    assert upgrade(empty_engine, "0003") == (None, "0003")
    note = archived_note("1700000000000-3", "tx-3")
    Ledger(empty_engine).add_notification(note)
    assert "patron_cards" not in inspect(empty_engine).get_table_names()
    assert upgrade(empty_engine) == ("0003", head_revision())
    assert Ledger(empty_engine).notification(note.entry_id) == note
    Ledger(empty_engine).write(None, TransactionRecord(transaction_id="tx-3"),
                               card=CardSeen("7210695258", "P1", note.entry_id, note.received_at))
    assert PatronCards(empty_engine).patron_of("7210695258") == "P1"


def test_processes_opening_a_fresh_sqlite_ledger_together_take_turns(tmp_path: Path) -> None:
    """A worker, the web service and a CLI command starting together on a fresh SQLite file: each opens
    the ledger (creating its tables once, under a lock beside the file), none fails with "table ...
    already exists". Four processes, five fresh files."""
    import subprocess
    import sys

    code = ("import sys; from worker.ledger import Ledger; Ledger.open(sys.argv[1]).close()")
    for n in range(5):
        url = f"sqlite:///{tmp_path / f'fresh{n}.db'}"
        procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=ROOT, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], [err[-400:] for err in errors]


_PRUNE_COUNTS = ("patron_sessions", "api_token_uses", "workspace_events")  # prune_runs' columns since 0009


def test_an_empty_database_gets_prune_runs_counts_of_0009(empty_engine: Engine) -> None:
    """An empty database upgraded to head has prune_runs' three new counts, NOT NULL and 0 when not given."""
    upgrade(empty_engine)
    columns = {c["name"]: c for c in inspect(empty_engine).get_columns("prune_runs")}
    assert all(columns[name]["nullable"] is False for name in _PRUNE_COUNTS)
    with empty_engine.begin() as conn:  # a row written without them, as code before 0009 wrote it
        conn.execute(text("INSERT INTO prune_runs (started_at, cutoff_at, retention_days, actor, transactions, "
                          "events, notifications) VALUES (1, 0, 30, 'os:alice', 1, 2, 3)"))
        row = conn.execute(select(t.prune_runs)).one()._mapping
    assert [row[name] for name in _PRUNE_COUNTS] == [0, 0, 0]


def test_the_0008_schema_upgrades_to_prune_counts(empty_engine: Engine) -> None:
    """A database at 0008 with a recorded prune run upgrades to 0009: the run keeps its counts and gets 0 for
    the sessions, token uses and workspace events it could not delete; downgrading drops the columns again."""
    from alembic import command

    from worker.ledger.schema import _alembic_config

    assert upgrade(empty_engine, "0008") == (None, "0008")
    with empty_engine.begin() as conn:
        conn.execute(text("INSERT INTO prune_runs (started_at, finished_at, cutoff_at, retention_days, actor, "
                          "transactions, events, notifications) VALUES (1, 2, 0, 30, 'os:alice', 1, 2, 3)"))
    assert not set(_PRUNE_COUNTS) & {c["name"] for c in inspect(empty_engine).get_columns("prune_runs")}
    assert upgrade(empty_engine, "0009") == ("0008", "0009")
    with empty_engine.connect() as conn:
        row = conn.execute(select(t.prune_runs)).one()._mapping
    assert (row["transactions"], row["events"], row["notifications"], row["actor"]) == (1, 2, 3, "os:alice")
    assert [row[name] for name in _PRUNE_COUNTS] == [0, 0, 0]
    with empty_engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "0008")
    assert current_revision(empty_engine) == "0008"
    assert not set(_PRUNE_COUNTS) & {c["name"] for c in inspect(empty_engine).get_columns("prune_runs")}
