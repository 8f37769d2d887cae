"""`vipflow users add|reset|disable|enable|list` on an SQLite ledger: passwords never on the command line,
a made-up one printed once, mistakes exit 2 with one line."""

from __future__ import annotations

import io
import json
import re
from decimal import Decimal

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


@pytest.mark.parametrize("argv", [
    ["users", "add", "frank", "--role", "reviewer", "--limit", "1e309", "--generate"],
    ["users", "add", "frank", "--role", "reviewer", "--limit", "99999999999999999999999999999", "--generate"],
    ["users", "add", "frank", "--role", "reviewer", "--limit", "1e20", "--generate"],
    ["users", "reset", "alice", "--limit", "1e309", "--generate"],
])
def test_a_limit_out_of_range_is_one_line_naming_it_and_changes_nothing(
        sqlite_url: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """--limit 1e309 printed a decimal.InvalidOperation traceback (exit 1), 1e20 was kept: now exit 2 with one
    `vipflow: --limit: ...` line giving the range; no user is added and alice's limit stays."""
    assert main(["users", "add", "alice", "--role", "reviewer", "--limit", "2500", "--generate"]) == 0
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    typed = argv[argv.index("--limit") + 1]
    assert err.splitlines() == [f"vipflow: --limit: {typed!r} is not an amount from 0.01 to 999,999,999.99 "
                                "dollars with at most two decimals (e.g. 1500.00)"] and out == ""
    users = {u.username: u.review_limit for u in store(sqlite_url).listing()}
    assert users == {"alice": Decimal("2500.00")}


def test_generate_and_no_password_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    """`users add --generate --no-password` was accepted silently: the parser refuses the pair (exit 2)."""
    with pytest.raises(SystemExit) as stopped:
        main(["users", "add", "olga", "--role", "viewer", "--generate", "--no-password"])
    assert stopped.value.code == 2
    assert "argument --no-password: not allowed with argument --generate" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["users", "add", "sam", "--role", "senior", "--limit", "100", "--generate"],
    ["users", "add", "vic", "--role", "viewer", "--limit", "100", "--no-password"],
    ["users", "add", "ada", "--role", "admin", "--limit", "100", "--generate"],
    ["users", "reset", "sue", "--limit", "100", "--generate"],
    ["users", "reset", "alice", "--role", "senior", "--limit", "100", "--generate"],
])
def test_a_limit_for_a_role_without_one_is_refused(sqlite_url: str, argv: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """--limit for a senior (decides any amount), a viewer or an admin (decide nothing) meant nothing and was
    kept silently: exit 2 naming --limit; nothing changes (sue stays a senior, alice a reviewer at 2500)."""
    assert main(["users", "add", "sue", "--role", "senior", "--generate"]) == 0
    assert main(["users", "add", "alice", "--role", "reviewer", "--limit", "2500", "--generate"]) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vipflow: --limit applies to reviewers only (") and len(err.splitlines()) == 1
    users = {u.username: (u.role.value, u.review_limit) for u in store(sqlite_url).listing()}
    assert users == {"sue": ("senior", None), "alice": ("reviewer", Decimal("2500.00"))}


def test_a_reviewer_made_senior_loses_their_own_limit(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A limit binds reviewers only: reset --role senior clears it (a later reviewer gets the default), and
    list shows "-" for a role without a limit."""
    assert main(["users", "add", "alice", "--role", "reviewer", "--limit", "2500", "--generate"]) == 0
    assert main(["users", "reset", "alice", "--role", "senior", "--generate"]) == 0
    user = store(sqlite_url).get("alice")
    assert user is not None and (user.role.value, user.review_limit) == ("senior", None)
    capsys.readouterr()
    assert main(["users", "list"]) == 0
    assert re.search(r"^alice\s+senior\s+limit -\s", capsys.readouterr().out)
