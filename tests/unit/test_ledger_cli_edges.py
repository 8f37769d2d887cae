"""The ledger at the edges a newcomer meets: a database URL that keeps nothing, a transaction known only
by the notification that was refused at the door."""

from __future__ import annotations

import pytest

from producers.cli import main
from worker.config import load_settings
from worker.errors import ConfigError
from worker.ledger import Ledger
from worker.store.archive import ArchivedNotification


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite:///", "sqlite:///file::memory:?mode=memory"])
def test_an_in_memory_ledger_is_refused_naming_the_key(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ledger nobody else can see and that keeps nothing is a configuration error naming database.url."""
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", url)
    with pytest.raises(ConfigError, match=r"database.*name a file"):
        load_settings(None)


def test_tx_show_lists_a_refused_notification(sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A transaction whose only notification was invalid has no decision, but tx show lists what the ledger
    holds of it (never the body), and exits 0."""
    ledger = Ledger.open(sqlite_url)
    body = b'{"transactionId": "txinv00001", "amount": "abc", "vipCardNumber": "7210695258"}'
    ledger.add_notifications([ArchivedNotification("1700000000000-0", "withdraw", body, 1700000000000, "invalid",
                                                   "txinv00001", "0" * 64, "amount: not a number",
                                                   "/vip/notify/withdraw")], done=["1700000000000-0"])
    ledger.engine.dispose()
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    assert main(["tx", "show", "txinv00001"]) == 0
    out = capsys.readouterr().out
    assert "no decision" in out and "invalid" in out and "amount: not a number" in out
    assert "7210695258" not in out


def test_tx_show_names_the_ledger_it_looked_in(sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing known: one line naming the transaction and the ledger searched, exit 2 (bad input)."""
    Ledger.open(sqlite_url).close()
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    assert main(["tx", "show", "txnone0001"]) == 2
    err = capsys.readouterr().err
    assert "txnone0001" in err and "ledger.db" in err and "Traceback" not in err
