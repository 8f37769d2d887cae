"""`vipflow users add|reset|disable|enable|list` on an SQLite ledger: passwords never on the command line,
a made-up one printed once, mistakes exit 2 with one line."""

from __future__ import annotations

import io
import json
import re

import pytest

from producers.cli import main
from worker.ledger import Ledger
from worker.ledger.users import UserStore


@pytest.fixture(autouse=True)
def _ledger(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)


def store(sqlite_url: str) -> UserStore:
    return UserStore(Ledger.open(sqlite_url).engine)


def test_add_reads_the_password_from_stdin_and_list_shows_no_hash(sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A password piped in becomes the user's; list --json shows role and limit, never a hash."""
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert main(["users", "add", "alice", "--role", "reviewer", "--limit", "2500"]) == 0
    assert "user 'alice' added as reviewer (limit 2500.00)" in capsys.readouterr().out
    assert store(sqlite_url).authenticate("alice", "correct horse battery") is not None
    assert main(["users", "list", "--json"]) == 0
    out = capsys.readouterr().out
    listed = json.loads(out)
    assert (listed["username"], listed["role"], listed["limit"]) == ("alice", "reviewer", "2500.00")
    assert "argon2" not in out


def test_generate_prints_a_password_once_that_works(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--generate makes up a password, prints it once, and it logs in; reset --generate replaces it."""
    assert main(["users", "add", "sam", "--role", "senior", "--generate"]) == 0
    found = re.search(r"password: (\S+)  \(shown only now\)", capsys.readouterr().out)
    assert found is not None and not found[1].startswith("-")
    assert store(sqlite_url).authenticate("sam", found[1]) is not None
    assert main(["users", "reset", "sam", "--generate", "--role", "reviewer"]) == 0
    again = re.search(r"password: (\S+)", capsys.readouterr().out)
    assert again is not None and store(sqlite_url).authenticate("sam", found[1]) is None
    user = store(sqlite_url).authenticate("sam", again[1])
    assert user is not None and user.role.value == "reviewer"


def test_no_password_users_cannot_log_in_with_one(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--no-password: single sign-on only; no password logs them in."""
    assert main(["users", "add", "olga", "--role", "viewer", "--no-password"]) == 0
    user = store(sqlite_url).get("olga")
    assert user is not None and not user.has_password
    assert store(sqlite_url).authenticate("olga", "") is None
    assert store(sqlite_url).authenticate("olga", "vipflow: a password nobody has") is None


def test_mistakes_exit_2_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A short password, a bad name or limit, a name in use, an unknown user: exit 2, one line each."""
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "alice", "--role", "reviewer"]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    assert main(["users", "add", "Alice", "--role", "reviewer", "--generate"]) == 2
    assert main(["users", "add", "alice", "--role", "reviewer", "--limit", "-5", "--generate"]) == 2
    assert main(["users", "add", "alice", "--role", "reviewer", "--generate"]) == 0
    assert main(["users", "add", "alice", "--role", "senior", "--generate"]) == 2
    assert main(["users", "disable", "nobody"]) == 2
    err = capsys.readouterr().err
    assert "exists already" in err and "no user named 'nobody'" in err
    assert main(["users", "disable", "alice"]) == 0
    assert main(["users", "enable", "alice"]) == 0
