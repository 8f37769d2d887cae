"""A command that only reads the ledger never creates one: a SQLite file that is not there is said, in one
line naming its absolute path, exit 2; the commands that write still create it."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.cli import main
from worker.errors import NoLedger
from worker.ledger import Ledger
from worker.ledger.schema import make_engine

READERS = [
    ["tx", "show", "tx00000001"],
    ["review", "list"],
    ["review", "list", "--json"],
    ["review", "show", "tx00000001"],
    ["review", "approve", "tx00000001"],
    ["review", "reject", "tx00000001", "--reason", "no"],
    ["replay", "--dry-run"],
    ["replay", "--id", "tx00000001"],
    ["db", "status"],
    ["db", "prune", "--dry-run"],
    ["tokens", "list"],
    ["tokens", "revoke", "ops"],
    ["status"],
    ["status", "--json"],
]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default configuration (relative sqlite:///var/vipflow.db), run from an empty directory."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.delenv("VIPFLOW_DATABASE__URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("argv", READERS, ids=" ".join)
def test_a_reading_command_from_another_directory_says_there_is_no_ledger(
        argv: list[str], elsewhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vipflow tx show ID` (and every reader) from a directory without var/vipflow.db: one line naming the
    absolute path, exit 2, and no var/ left behind (before: an empty ledger, "0 waiting for review")."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = (f"vipflow: no ledger at {elsewhere / 'var' / 'vipflow.db'} (database.url; a relative sqlite path "
                "is relative to the current directory): run from where the ledger is, or set database.url")
    assert err == [expected]
    assert list(elsewhere.iterdir()) == []


def test_a_mistyped_path_creates_no_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """VIPFLOW_DATABASE__URL=sqlite:////tmp/x/b/c.db vipflow tx show X: neither x/b nor c.db is made."""
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", f"sqlite:///{tmp_path}/x/b/c.db")
    assert main(["tx", "show", "X"]) == 2
    assert f"no ledger at {tmp_path}/x/b/c.db" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_open_without_create_refuses_a_missing_file_and_reads_an_existing_one(tmp_path: Path) -> None:
    """Ledger.open(url, create=False) raises NoLedger naming the file; once a writer made it, it opens."""
    url = f"sqlite:///{tmp_path}/l/ledger.db"
    with pytest.raises(NoLedger) as caught:
        Ledger.open(url, create=False)
    assert caught.value.path == str(tmp_path / "l" / "ledger.db")
    with pytest.raises(NoLedger):
        make_engine(url, create=False)
    assert not (tmp_path / "l").exists()
    Ledger.open(url).close()  # a writer (the worker, db upgrade) creates it
    with Ledger.open(url, create=False) as ledger:
        assert ledger.review_stats(60)[0] == 0


def test_db_upgrade_still_creates_the_ledger(elsewhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vipflow db upgrade` is the operator's way to make a ledger: it creates var/vipflow.db; then the
    readers find it (`review list` says 0 waiting)."""
    assert main(["db", "upgrade"]) == 0
    assert (elsewhere / "var" / "vipflow.db").is_file()
    assert main(["review", "list", "--json"]) == 0
    assert main(["db", "status"]) == 0
    assert "no ledger" not in capsys.readouterr().err
