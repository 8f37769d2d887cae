"""``vipflow db upgrade|status|prune`` through the real dispatcher, and the actor the CLI records."""

from __future__ import annotations

import json
import os
import pwd
import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from producers.cli import main
from tests.conftest import archived_note
from worker.config import LedgerSettings, Settings
from worker.ledger import Ledger, NotificationSeen, State, TransactionRecord
from worker.ledger import prune as prune_module
from worker.ledger import tables as t
from worker.ledger.actor import cli_actor
from worker.ledger.schema import head_revision, make_engine, upgrade
from worker.ledger.sessions import PatronSession, SessionStore

DAY_S = prune_module.DAY_S


@pytest.fixture
def db_url(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An SQLite ledger configured for the CLI through VIPFLOW_DATABASE__URL (no config file)."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    return sqlite_url


@pytest.fixture
def ledger_at(db_url: str) -> Iterator[Ledger]:
    """A Ledger on the CLI's database (migrated)."""
    with Ledger.open(db_url) as ledger:
        yield ledger


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# The steps from decided to each end state: (action, state after it).
_PATHS: dict[State | None, list[tuple[str, State]]] = {
    State.APPROVED: [("approve", State.APPROVING), ("approve", State.APPROVED)],
    State.REJECTED: [("reject", State.REJECTED)],
    State.FAILED: [("fail", State.FAILED)],
    None: [("review", State.REVIEW)],
}


def _transaction(ledger: Ledger, txid: str, final: State | None, *, received_at_ms: int = 1_000) -> None:
    """A transaction with a notification (done), a dead letter and events, ending in ``final`` (None: review)."""
    note = archived_note(f"{received_at_ms}-{txid}", txid, received_at_ms=received_at_ms)
    ledger.add_notifications([note], done=[note.entry_id])
    seen = NotificationSeen(note.entry_id, "withdraw", "valid", "2023-11-14T22:13:20Z")
    stored = ledger.write(None, TransactionRecord(txid, transaction_type="withdraw", amount="99.00")
                          .with_notification(seen).moved(State.DECIDED))
    for action, state in _PATHS[final]:
        status = "started" if state == State.APPROVING else "done"
        stored = ledger.write(stored, stored.record.with_action(action, status).moved(state))
    ledger.add_dead_letter(note.entry_id, txid, "gave up once", "retries", 5)


def _later(monkeypatch: pytest.MonkeyPatch, days: float) -> None:
    """Move prune's clock ``days`` ahead (rows cannot be back-dated: the ledger is append-only)."""
    monkeypatch.setattr(prune_module, "now", lambda: prune_module.time.time() + days * DAY_S)


def _count(ledger: Ledger, table: str) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.metadata.tables[table])).scalar_one())


# --- upgrade and status ----------------------------------------------------------------------------

def test_upgrade_migrates_an_empty_database_and_says_from_what_to_what(db_url: str,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`vipflow db upgrade` on an empty SQLite file prints empty -> head and exits 0."""
    code, out, _ = _run(capsys, "db", "upgrade")
    assert code == 0
    assert f"empty -> {head_revision()} (sqlite)" in out


def test_upgrade_of_a_current_database_says_so(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A second `vipflow db upgrade` reports that the ledger is already at head."""
    _run(capsys, "db", "upgrade")
    code, out, _ = _run(capsys, "db", "upgrade")
    assert code == 0 and f"already at {head_revision()}" in out


def test_upgrade_reads_the_database_from_a_config_file(sqlite_url: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """--config FILE names the database that `vipflow db upgrade` migrates."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.delenv("VIPFLOW_DATABASE__URL", raising=False)
    config = tmp_path / "vipflow.yaml"
    config.write_text(f"database:\n  url: {sqlite_url}\n", encoding="utf-8")
    code, out, _ = _run(capsys, "--config", str(config), "db", "upgrade")
    assert code == 0 and sqlite_url in out


def test_status_of_an_empty_database_names_the_command_to_run(db_url: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`vipflow db status` on an unmigrated database says it is empty and to run `vipflow db upgrade`."""
    Path(db_url.removeprefix("sqlite:///")).touch()  # an empty file: a database with no schema yet
    code, out, _ = _run(capsys, "db", "status")
    assert code == 0
    assert "schema    empty" in out and "vipflow db upgrade" in out


def test_status_json_gives_revisions_dialect_and_counts(ledger_at: Ledger,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`vipflow db status --json` reports current and head revisions, the dialect and the row counts."""
    _transaction(ledger_at, "tx-1", State.APPROVED)
    code, out, _ = _run(capsys, "db", "status", "--json")
    status = json.loads(out)
    assert code == 0
    assert (status["current"], status["head"], status["up_to_date"], status["dialect"]) == (
        head_revision(), head_revision(), True, "sqlite")
    assert status["counts"] == {"transactions": 1, "events": _count(ledger_at, "events"), "notifications": 1,
                                "dead_letters": 1, "patron_sessions": 0, "api_token_uses": 0,
                                "workspace_events": 0}


def test_status_counts_the_tables_prune_keeps_small(ledger_at: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    """`vipflow db status` lists patron sessions, API token uses and workspace events with the other tables."""
    _session(ledger_at, "tx-session")
    _token_use(ledger_at, prune_module.time.time())
    _workspace_event(ledger_at, prune_module.time.time())
    code, out, _ = _run(capsys, "db", "status")
    lines = dict(line.rsplit(maxsplit=1) for line in out.splitlines()[2:])
    assert code == 0
    assert (lines["patron_sessions"], lines["api_token_uses"], lines["workspace_events"]) == ("1", "1", "1")


def test_status_never_prints_the_database_password(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The database URL shown by status (here in its one-line failure) hides the password."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", f"postgresql+psycopg://ops:s3cret-pw@127.0.0.1:{_free_port()}/x")
    _, out, err = _run(capsys, "db", "status")
    assert "s3cret-pw" not in out + err


# --- prune -----------------------------------------------------------------------------------------

def test_prune_deletes_final_transactions_older_than_the_cutoff(ledger_at: Ledger, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Final transactions past the retention go with their events, notifications and dead letters."""
    for txid, final in (("tx-approved", State.APPROVED), ("tx-rejected", State.REJECTED),
                        ("tx-failed", State.FAILED)):
        _transaction(ledger_at, txid, final)
    monkeypatch.setenv("VIPFLOW_LEDGER__RETENTION_DAYS", "30")
    _later(monkeypatch, 31)
    code, out, _ = _run(capsys, "db", "prune")
    assert code == 0 and "deleted 3 transactions" in out
    for table in ("transactions", "events", "notifications", "notification_done", "dead_letters"):
        assert _count(ledger_at, table) == 0, table


def test_prune_keeps_transactions_that_are_not_final(ledger_at: Ledger, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A transaction waiting in review is kept however old it is, with everything of its own."""
    _transaction(ledger_at, "tx-review", None)
    events = ledger_at.events("tx-review")
    monkeypatch.setenv("VIPFLOW_LEDGER__RETENTION_DAYS", "30")
    _later(monkeypatch, 3650)
    code, out, _ = _run(capsys, "db", "prune")
    assert code == 0 and "deleted 0 transactions" in out
    assert ledger_at.load("tx-review") is not None and ledger_at.events("tx-review") == events
    assert len(ledger_at.notifications_of("tx-review")) == 1 and ledger_at.dead_letter_count() == 1


def test_prune_keeps_final_transactions_younger_than_the_cutoff(ledger_at: Ledger, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A final transaction last changed within ledger.retention_days stays."""
    _transaction(ledger_at, "tx-approved", State.APPROVED)
    monkeypatch.setenv("VIPFLOW_LEDGER__RETENTION_DAYS", "30")
    _later(monkeypatch, 29)
    code, _, _ = _run(capsys, "db", "prune")
    assert code == 0 and ledger_at.load("tx-approved") is not None


def test_prune_keeps_a_final_transaction_with_a_recent_notification(ledger_at: Ledger,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A final transaction that received a notification after the cutoff is still talked about: it stays."""
    _transaction(ledger_at, "tx-approved", State.APPROVED)
    late_ms = int((prune_module.time.time() + 30 * DAY_S) * 1000)
    ledger_at.add_notification(archived_note(f"{late_ms}-0", "tx-approved", received_at_ms=late_ms))
    monkeypatch.setenv("VIPFLOW_LEDGER__RETENTION_DAYS", "1")
    _later(monkeypatch, 2)
    _run(capsys, "db", "prune")
    assert ledger_at.load("tx-approved") is not None
    assert len(ledger_at.notifications_of("tx-approved")) == 2


def test_prune_deletes_old_notifications_of_no_transaction(ledger_at: Ledger, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid notifications (no transaction) older than the cutoff go with their dead letters; newer stay."""
    now_ms = int(prune_module.time.time() * 1000)
    old = archived_note(f"{now_ms}-0", None, received_at_ms=now_ms, status="invalid")
    recent = archived_note(f"{now_ms + 5 * DAY_S * 1000}-0", None, received_at_ms=now_ms + 5 * DAY_S * 1000,
                           status="invalid")
    ledger_at.add_notifications([old, recent])
    ledger_at.add_dead_letter(old.entry_id, None, "not a valid notification", "invalid", 1)
    monkeypatch.setenv("VIPFLOW_LEDGER__RETENTION_DAYS", "1")
    _later(monkeypatch, 2)
    code, out, _ = _run(capsys, "db", "prune")
    assert code == 0 and "1 notification and" in out
    assert ledger_at.notification(old.entry_id) is None and ledger_at.notification(recent.entry_id) == recent
    assert ledger_at.dead_letters(include_closed=True) == []


def test_prune_records_its_run_with_the_configured_actor(ledger_at: Ledger, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Each prune is a prune_runs row: when, the cutoff, the retention, who (ledger.actor), and the counts."""
    _transaction(ledger_at, "tx-approved", State.APPROVED)
    events = _count(ledger_at, "events")
    monkeypatch.setenv("VIPFLOW_LEDGER__RETENTION_DAYS", "30")
    monkeypatch.setenv("VIPFLOW_LEDGER__ACTOR", "ops-team")
    _later(monkeypatch, 31)
    code, out, _ = _run(capsys, "db", "prune", "--json")
    report = json.loads(out)
    with ledger_at.engine.connect() as conn:
        run = conn.execute(select(t.prune_runs)).one()._mapping
    assert code == 0 and run["id"] == report["run_id"]
    assert (run["actor"], run["retention_days"], run["transactions"], run["events"], run["notifications"]) == (
        "config:ops-team", 30, 1, events, 1)
    assert run["started_at"] <= run["finished_at"]
    assert run["cutoff_at"] == pytest.approx(run["started_at"] - 30 * DAY_S)


def test_prune_dry_run_counts_and_changes_nothing(ledger_at: Ledger, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run reports what would go, deletes nothing and records no run."""
    _transaction(ledger_at, "tx-approved", State.APPROVED)
    events = _count(ledger_at, "events")
    monkeypatch.setenv("VIPFLOW_LEDGER__RETENTION_DAYS", "30")
    _later(monkeypatch, 31)
    code, out, _ = _run(capsys, "db", "prune", "--dry-run", "--json")
    report = json.loads(out)
    assert code == 0 and report["dry_run"] is True and report["run_id"] is None
    assert (report["transactions"], report["events"], report["notifications"], report["dead_letters"]) == (
        1, events, 1, 1)
    assert ledger_at.load("tx-approved") is not None and _count(ledger_at, "prune_runs") == 0


# --- prune: patron sessions, API token uses, workspace events (SQLite and PostgreSQL) --------------

@pytest.fixture
def any_ledger(ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    """A migrated ledger, once SQLite and once PostgreSQL, configured for the CLI."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", ledger_url)
    with Ledger.open(ledger_url) as ledger:
        yield ledger


def _session(ledger: Ledger, txid: str, *, created_at: float | None = None,
             opened_at: float | None = None) -> None:
    """A patron session reserved and opened now; ``created_at`` / ``opened_at`` (epoch seconds) replace its
    times (the table is not append-only: VIP's answer updates it)."""
    store = SessionStore(ledger.engine)
    store.reserve(PatronSession(transaction_id=txid, status="opening", patron_kind="existing", patron_id="p-1",
                                vip_card_number="7210695258", transaction_type="withdraw", amount=Decimal("99.00")))
    store.mark_open(txid, f"vip-{txid}")
    times = {k: v for k, v in (("created_at", created_at), ("opened_at", opened_at)) if v is not None}
    if times:
        with ledger.engine.begin() as conn:
            conn.execute(update(t.patron_sessions).where(t.patron_sessions.c.transaction_id == txid).values(times))


def _token_use(ledger: Ledger, at: float) -> None:
    with ledger.engine.begin() as conn:  # inserted with its time: the table refuses UPDATE
        conn.execute(insert(t.api_token_uses).values(token_name="site", at=at, method="POST",
                                                     route="/api/v1/sessions", status=201))


def _workspace_event(ledger: Ledger, at: float) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(insert(t.workspace_events).values(at=at, actor="user:alice", action="login"))


def _sessions(ledger: Ledger) -> set[str]:
    with ledger.engine.connect() as conn:
        return set(conn.execute(select(t.patron_sessions.c.transaction_id)).scalars())


def _world(ledger: Ledger) -> float:
    """What the tests below prune 31 days on with a retention of 30 (the cutoff: now + 1 day); returns now.

    - tx-pruned: a final transaction with its session, both old: both go;
    - tx-kept: a transaction in review with its old session: both stay;
    - tx-young: a final transaction (goes) whose session was opened after the cutoff: it stays;
    - unused-old: an old session of no transaction: goes; unused-late: one opened after the cutoff: stays;
    - two old API token uses and workspace events (go), one recent of each (stays)."""
    now = prune_module.time.time()
    _session(ledger, "tx-pruned")
    _transaction(ledger, "tx-pruned", State.APPROVED)
    _session(ledger, "tx-kept")
    _transaction(ledger, "tx-kept", None)
    _session(ledger, "tx-young", opened_at=now + 5 * DAY_S)
    _transaction(ledger, "tx-young", State.REJECTED)
    _session(ledger, "unused-old")
    _session(ledger, "unused-late", opened_at=now + 5 * DAY_S)  # created before the cutoff, opened after it
    for at in (now, now + 0.5 * DAY_S, now + 5 * DAY_S):
        _token_use(ledger, at)
        _workspace_event(ledger, at)
    return now


def test_prune_deletes_old_sessions_token_uses_and_workspace_events(any_ledger: Ledger,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """An old session goes with its pruned transaction, an old unused one goes; a session of a kept transaction
    stays however old, and one whose latest time is after the cutoff stays; old token uses and workspace
    events go, recent ones stay. The report and prune_runs count them."""
    now = _world(any_ledger)
    monkeypatch.setenv("VIPFLOW_LEDGER__RETENTION_DAYS", "30")
    _later(monkeypatch, 31)
    code, out, _ = _run(capsys, "db", "prune", "--json")
    report = json.loads(out)
    assert code == 0 and report["transactions"] == 2
    assert _sessions(any_ledger) == {"tx-kept", "tx-young", "unused-late"}
    assert any_ledger.load("tx-kept") is not None
    with any_ledger.engine.connect() as conn:
        assert list(conn.execute(select(t.api_token_uses.c.at)).scalars()) == [pytest.approx(now + 5 * DAY_S)]
        assert list(conn.execute(select(t.workspace_events.c.at)).scalars()) == [pytest.approx(now + 5 * DAY_S)]
        run = conn.execute(select(t.prune_runs)).one()._mapping
    assert (report["patron_sessions"], report["api_token_uses"], report["workspace_events"]) == (2, 2, 2)
    assert (run["patron_sessions"], run["api_token_uses"], run["workspace_events"]) == (2, 2, 2)
    assert (run["transactions"], run["id"]) == (2, report["run_id"]) and run["finished_at"] is not None


def test_a_session_left_by_its_pruned_transaction_goes_once_it_is_old(any_ledger: Ledger,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A session younger than its pruned transaction stays; a later prune takes it as a session of no
    transaction. A session of a kept transaction stays at every prune."""
    _world(any_ledger)
    monkeypatch.setenv("VIPFLOW_LEDGER__RETENTION_DAYS", "30")
    _later(monkeypatch, 31)
    _run(capsys, "db", "prune")
    _later(monkeypatch, 40)  # the cutoff is now + 10 days: the sessions opened at now + 5 days are old
    code, out, _ = _run(capsys, "db", "prune")
    assert code == 0 and "deleted 2 patron sessions, 1 API token use and 1 workspace event" in out
    assert _sessions(any_ledger) == {"tx-kept"}
    assert _count(any_ledger, "api_token_uses") == _count(any_ledger, "workspace_events") == 0


def test_prune_in_small_batches_deletes_and_records_the_same(any_ledger: Ledger,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of one row (keyset: each starts where the last stopped) delete what one batch would, and
    prune_runs adds every batch's counts."""
    _world(any_ledger)
    _later(monkeypatch, 31)
    report = prune_module.prune(any_ledger.engine, retention_days=30, actor="os:alice", batch=1)
    assert (report.transactions, report.patron_sessions, report.api_token_uses, report.workspace_events) == (
        2, 2, 2, 2)
    assert _sessions(any_ledger) == {"tx-kept", "tx-young", "unused-late"}
    with any_ledger.engine.connect() as conn:
        run = conn.execute(select(t.prune_runs)).one()._mapping
    assert (run["transactions"], run["patron_sessions"], run["api_token_uses"], run["workspace_events"]) == (
        2, 2, 2, 2)


def test_prune_dry_run_counts_sessions_token_uses_and_workspace_events(any_ledger: Ledger,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run deletes nothing, records no run, and counts exactly what the prune then deletes."""
    _world(any_ledger)
    sizes = {name: _count(any_ledger, name) for name in prune_module.COUNTED}
    monkeypatch.setenv("VIPFLOW_LEDGER__RETENTION_DAYS", "30")
    _later(monkeypatch, 31)
    code, out, _ = _run(capsys, "db", "prune", "--dry-run")
    assert code == 0
    assert "would delete 2 patron sessions, 2 API token uses and 2 workspace events older than" in out
    _, out, _ = _run(capsys, "db", "prune", "--dry-run", "--json")
    dry = json.loads(out)
    assert {name: _count(any_ledger, name) for name in prune_module.COUNTED} == sizes
    assert _count(any_ledger, "prune_runs") == 0
    _, out, _ = _run(capsys, "db", "prune", "--json")
    done = json.loads(out)
    counts = ("transactions", "events", "notifications", "dead_letters", "patron_sessions", "api_token_uses",
              "workspace_events")
    assert {k: dry[k] for k in counts} == {k: done[k] for k in counts}
    assert (dry["patron_sessions"], dry["api_token_uses"], dry["workspace_events"]) == (2, 2, 2)


def test_postgresql_refuses_a_workspace_event_delete_outside_prune(pg_url: str) -> None:
    """On PostgreSQL only prune's batches delete: a DELETE of a workspace event (or a token use) elsewhere is
    refused by the append-only trigger, and the rows stay."""
    with Ledger.open(pg_url) as ledger:
        _workspace_event(ledger, 1.0)
        _token_use(ledger, 1.0)
        for table in ("workspace_events", "api_token_uses"):
            with pytest.raises(SQLAlchemyError, match="append-only"), ledger.engine.begin() as conn:
                conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - a table name of this test
            assert _count(ledger, table) == 1


# --- PostgreSQL and failures -----------------------------------------------------------------------

def test_upgrade_migrates_an_empty_postgresql(pg_empty_url: str, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`vipflow db upgrade` on an empty PostgreSQL database takes it to head."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", pg_empty_url)
    code, out, _ = _run(capsys, "db", "upgrade")
    assert code == 0 and f"empty -> {head_revision()} (postgresql)" in out


def test_prune_refuses_an_outdated_postgresql_schema(pg_empty_url: str, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`vipflow db prune` on a PostgreSQL ledger at 0001 exits 1 with one line naming `vipflow db upgrade`."""
    engine = make_engine(pg_empty_url)
    upgrade(engine, "0001")
    engine.dispose()
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", pg_empty_url)
    code, _, err = _run(capsys, "db", "prune")
    assert code == 1 and "vipflow db upgrade" in err and err.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("action", ["upgrade", "status", "prune"])
def test_an_unreachable_database_gives_one_line_and_exit_1(action: str, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A PostgreSQL that does not answer makes every db command exit 1 with one line, never a traceback."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/x")
    code, out, err = _run(capsys, "db", action)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "does not answer" in err and "Traceback" not in err


def test_a_database_url_vipflow_cannot_use_exits_2(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A database.url that is neither SQLite nor PostgreSQL is a configuration error: one line, exit 2."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", "mysql://root@127.0.0.1/x")
    code, _, err = _run(capsys, "db", "status")
    assert code == 2 and err.count("\n") == 1 and "database" in err


# --- the actor the CLI records ---------------------------------------------------------------------

def test_the_configured_actor_is_recorded_as_config() -> None:
    """With ledger.actor set, the CLI records ``config:<ledger.actor>``."""
    assert cli_actor(Settings(ledger=LedgerSettings(actor=" ops-team "))) == "config:ops-team"


def test_without_a_configured_actor_the_os_account_is_recorded() -> None:
    """With no ledger.actor, the CLI records the operating-system account that ran it."""
    assert cli_actor(Settings()) == f"os:{pwd.getpwuid(os.getuid()).pw_name}"


def test_the_environment_cannot_rename_the_os_account(monkeypatch: pytest.MonkeyPatch) -> None:
    """$USER and $LOGNAME are free text anyone can set: the actor comes from the process's uid instead."""
    monkeypatch.setenv("USER", "someone-else")
    monkeypatch.setenv("LOGNAME", "someone-else")
    assert cli_actor(Settings()) == f"os:{pwd.getpwuid(os.getuid()).pw_name}"


def test_a_uid_without_a_name_is_recorded_by_number(monkeypatch: pytest.MonkeyPatch) -> None:
    """A uid the system has no name for (a container's arbitrary uid) is recorded as ``os:uid<N>``."""
    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert cli_actor(Settings()) == f"os:uid{os.getuid()}"
