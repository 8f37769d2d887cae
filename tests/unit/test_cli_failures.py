"""Every ``vipflow`` command ends a failure the same way (``producers.exits``): one line naming what is
wrong and what to do, the documented exit code, never a traceback; run through the real dispatcher
against a Redis or a database on a closed port."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
from collections.abc import Iterator

import pytest

from producers.cli import main
from producers.exits import EXIT_FAILED, EXIT_OUTPUT_CLOSED, EXIT_USAGE
from tests.conftest import ROOT, archived_note
from worker.ledger import Ledger, NotificationSeen, State, TransactionRecord

SECRET = "s3cret-pw"


def _closed_port() -> int:
    """A port nothing listens on (the OS just handed it out and it was let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def configured(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """What the commands need besides Redis: a ledger file, VIP's key and operator id, the shipped rules."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    monkeypatch.setenv("VIPFLOW_VIP__SECRET_KEY1", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("VIPFLOW_VIP__OPERATOR_ID", "op-test")
    monkeypatch.setenv("VIPFLOW_RULES__PATH", str(ROOT / "rules" / "default"))
    Ledger.open(sqlite_url).close()  # the reading commands find a ledger there (they create none)
    return sqlite_url


@pytest.fixture
def in_review(configured: str) -> str:
    """One withdrawal of 61.9 waiting for review in the configured ledger; its id."""
    txid = "tx00000002"
    with Ledger.open(configured) as ledger:
        note = archived_note("1700000000000-0", txid)
        ledger.add_notifications([note], done=[note.entry_id])
        seen = NotificationSeen(note.entry_id, "withdraw", "valid", "2023-11-14T22:13:20Z")
        stored = ledger.write(None, TransactionRecord(txid, transaction_type="withdraw", amount="61.9")
                              .with_notification(seen).moved(State.DECIDED))
        ledger.write(stored, stored.record.with_action("review", "done").moved(State.REVIEW))
    return txid


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("vipflow: ") and "Traceback" not in err, err
    return err


# Commands that reach Redis before anything else can go wrong.
REDIS_COMMANDS = [
    ["review", "approve", "tx00000001"],
    ["review", "reject", "tx00000001", "--reason", "test"],
    ["replay", "--id", "tx00000001"],
    ["replay", "--unprocessed"],
    ["replay", "--dry-run", "--id", "tx00000001"],
]


@pytest.mark.parametrize("argv", REDIS_COMMANDS, ids=" ".join)
def test_an_unreachable_redis_is_one_line_naming_it_and_exit_1(argv: list[str], configured: str,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Redis on a closed port: one line naming the URL (password hidden), the key to check, exit 1."""
    port = _closed_port()
    monkeypatch.setenv("VIPFLOW_REDIS__URL", f"redis://:{SECRET}@127.0.0.1:{port}/0")
    code, _, err = _run(capsys, argv)
    assert code == EXIT_FAILED
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in _one_line(err)
    assert "redis.url" in err and SECRET not in err


@pytest.mark.parametrize("argv", REDIS_COMMANDS[:3], ids=" ".join)
def test_a_malformed_redis_url_is_bad_configuration(argv: list[str], configured: str,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A Redis URL redis-py cannot use is a configuration error naming redis.url: exit 2."""
    monkeypatch.setenv("VIPFLOW_REDIS__URL", "http://127.0.0.1:6379")
    code, _, err = _run(capsys, argv)
    assert code == EXIT_USAGE and "redis.url" in _one_line(err) and "expected redis://" in err


def test_a_redis_database_number_out_of_range_is_bad_configuration(configured: str, redis_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A real Redis that refuses the database number: one line saying so, exit 2."""
    monkeypatch.setenv("VIPFLOW_REDIS__URL", redis_url.rsplit("/", 1)[0] + "/9999")
    code, _, err = _run(capsys, ["replay", "--unprocessed"])
    assert code == EXIT_USAGE and "DB index is out of range" in _one_line(err) and "/9999" in err


LEDGER_COMMANDS = [
    ["review", "list"], ["review", "list", "--json"], ["review", "show", "tx00000001"],
    ["review", "approve", "tx00000001"], ["review", "reject", "tx00000001", "--reason", "test"],
    ["tx", "show", "tx00000001"], ["replay", "--id", "tx00000001"], ["replay", "--dlq"],
    ["replay", "--unprocessed"], ["replay", "--since", "2024-01-01"], ["replay", "--dry-run"],
    ["db", "upgrade"], ["db", "status"], ["db", "prune", "--dry-run"],
]


@pytest.mark.parametrize("argv", LEDGER_COMMANDS, ids=" ".join)
def test_an_unreachable_database_is_one_line_naming_it_and_exit_1(argv: list[str], configured: str,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The ledger's PostgreSQL on a closed port: one line naming its URL (password hidden) and
    database.url, exit 1, for every command that reads or writes the ledger."""
    port = _closed_port()
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", f"postgresql+psycopg://ops:{SECRET}@127.0.0.1:{port}/vipflow")
    code, _, err = _run(capsys, argv)
    assert code == EXIT_FAILED
    assert f"ops:***@127.0.0.1:{port}/vipflow does not answer (Connection refused)" in _one_line(err)
    assert "database.url" in err and SECRET not in err


def test_messages_carry_no_python_class_names(configured: str, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """What failed is said in the failing system's words, not as OperationalError or ConnectionError."""
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", f"postgresql+psycopg://ops@127.0.0.1:{_closed_port()}/vipflow")
    _, _, db_err = _run(capsys, ["db", "status"])
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", configured)
    monkeypatch.setenv("VIPFLOW_REDIS__URL", f"redis://127.0.0.1:{_closed_port()}/0")
    _, _, redis_err = _run(capsys, ["replay", "--unprocessed"])
    for name in ("Error", "Exception", "Operational"):
        assert name not in db_err + redis_err


@contextlib.contextmanager
def closed_stdout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """stdout is a pipe whose reader has already left, as `| head -1` leaves it (set inside the test:
    pytest puts its own capture back at the start of each test)."""
    read, write = os.pipe()
    os.close(read)
    with open(write, "w", encoding="utf-8") as pipe:
        monkeypatch.setattr("sys.stdout", pipe)
        try:
            yield
        finally:
            monkeypatch.undo()
            os.dup2(os.open(os.devnull, os.O_WRONLY), write)  # what is left unflushed goes nowhere


PRINTING_COMMANDS = [
    ["rules", "check"], ["rules", "test"], ["db", "status"], ["db", "status", "--json"],
    ["db", "prune", "--dry-run"], ["review", "list"], ["review", "list", "--json"],
    ["review", "show", "tx00000002"], ["tx", "show", "tx00000002"], ["tx", "show", "tx00000002", "--json"],
    ["replay", "--dry-run"], ["replay", "--dry-run", "--json"],
]


@pytest.mark.parametrize("argv", PRINTING_COMMANDS, ids=" ".join)
def test_output_into_a_closed_pipe_ends_quietly(argv: list[str], in_review: str,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A reader that leaves (``| head -1``) ends the command with exit 141 and nothing on stderr."""
    with closed_stdout(monkeypatch):
        code = main(argv)
    assert (code, capsys.readouterr().err) == (EXIT_OUTPUT_CLOSED, "")


@pytest.mark.parametrize("argv", REDIS_COMMANDS[:4:3], ids=" ".join)
def test_sentinels_that_know_no_master_are_one_line_naming_them_and_exit_1(
        argv: list[str], configured: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """With redis.sentinels on closed ports: one line naming the master and the sentinels, the keys to check,
    exit 1, no password."""
    ports = [_closed_port(), _closed_port()]
    monkeypatch.setenv("VIPFLOW_REDIS__URL", f"redis://:{SECRET}@unused/0")
    monkeypatch.setenv("VIPFLOW_REDIS__SENTINELS", ",".join(f"127.0.0.1:{p}" for p in ports))
    code, _, err = _run(capsys, argv)
    assert code == EXIT_FAILED
    line = _one_line(err)
    assert (f"cannot reach the Redis master 'mymaster' via sentinels 127.0.0.1:{ports[0]}, 127.0.0.1:{ports[1]} "
            "(database 0) (no sentinel answering knows a master named 'mymaster')") in line
    assert "redis.sentinels" in line and SECRET not in line
