"""``vipflow db upgrade|status|prune`` through the real dispatcher, and the actor the CLI records."""

from __future__ import annotations

import json
import os
import pwd
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from producers.cli import main
from tests.conftest import archived_note
from worker.config import LedgerSettings, Settings
from worker.ledger import Ledger, NotificationSeen, State, TransactionRecord
from worker.ledger import prune as prune_module
from worker.ledger import tables as t
from worker.ledger.actor import cli_actor
from worker.ledger.schema import head_revision, make_engine, upgrade

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
                                "dead_letters": 1}


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
