"""Replay selections: parsing errors name the option; sources (the ledger, and the intake buffer where a
notification may still be) and time windows select the right entries."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from producers.cli import main
from tests.conftest import ROOT, archived_note
from worker.ledger import Ledger, State, TransactionRecord
from worker.replay import Selected, SelectionError, Stores, make_selection, parse_time, select, stores
from worker.store.archive import ArchivedNotification


def test_an_unparseable_since_names_the_option() -> None:
    """--since that is not an ISO time is refused naming --since."""
    with pytest.raises(SelectionError, match=r"^--since: 'last tuesday' is not an ISO time"):
        make_selection(since="last tuesday")


def test_an_unparseable_until_names_the_option() -> None:
    """--until that is not an ISO time is refused naming --until."""
    with pytest.raises(SelectionError, match=r"^--until: "):
        make_selection(until="2024-13-45")


def test_until_before_since_is_refused() -> None:
    """--until earlier than --since is refused naming --until."""
    with pytest.raises(SelectionError, match=r"^--until: .* is before --since"):
        make_selection(since="2024-05-02T00:00:00Z", until="2024-05-01T23:59:59Z")


def test_two_sources_are_refused() -> None:
    """--id with --dlq is ambiguous and refused."""
    with pytest.raises(SelectionError, match="choose one"):
        make_selection(ids=["tx00000001"], dlq=True)


def test_an_empty_selection_is_refused() -> None:
    """Replaying with no selection at all is refused rather than replaying the whole archive."""
    with pytest.raises(SelectionError, match="say what to replay"):
        make_selection()


def test_an_empty_selection_of_a_backtest_is_the_whole_ledger() -> None:
    """A backtest changes nothing: with no selection it reads every notification, unbounded in time."""
    sel = make_selection(everything=True)
    assert sel.by_time and (sel.since_ms, sel.until_ms) == (None, None)


def test_a_time_without_offset_is_utc() -> None:
    """A naive time is read as UTC, and a date alone as its midnight."""
    assert parse_time("2024-05-01T00:00:00", "--since") == parse_time("2024-05-01T00:00:00+00:00", "--since")
    assert parse_time("2024-05-01", "--since") == 1714521600000
    assert parse_time("2024-05-01T02:00:00+02:00", "--since") == 1714521600000


@pytest.fixture
def st(redis_url: str, sqlite_url: str) -> Iterator[Stores]:
    client = redis.Redis.from_url(redis_url)
    ledger = Ledger.open(sqlite_url)
    yield stores(client, "t", ledger)
    client.close()
    ledger.engine.dispose()


def _noted(st: Stores, entry_id: str, txid: str | None, *, status: str = "valid", kind: str = "deposit",
           done: bool = False) -> str:
    """A notification in the ledger, received at the entry id's millisecond."""
    note = ArchivedNotification(entry_id=entry_id, kind=kind, body=b"{}", received_at=int(entry_id.split("-")[0]),
                                status=status, transaction_id=txid, body_sha256="", error=None)  # type: ignore[arg-type]
    st.ledger.add_notifications([note], done=[entry_id] if done else [])
    return entry_id


def _ids(selected: Selected) -> list[str]:
    return [r.entry_id for r in selected.refs]


def test_an_unknown_transaction_id_names_it(st: Stores) -> None:
    """--id of a transaction that has no notification anywhere is refused naming the id."""
    _noted(st, "1000-0", "tx00000001")
    with pytest.raises(SelectionError, match=r"^--id: no notification recorded for transaction tx99999999$"):
        select(make_selection(ids=["tx00000001", "tx99999999"]), st)


def test_ids_select_every_entry_of_the_transaction_in_the_window(st: Stores) -> None:
    """--id selects the transaction's entries in the ledger and the buffer (duplicates included), oldest
    first, narrowed by time."""
    a = _noted(st, "1000-0", "tx00000001")
    _noted(st, "1000-1", "tx00000002")
    b = _noted(st, "1000-10", "tx00000001", status="conflict")
    c = st.archive.append("deposit", b"{}", status="valid", transaction_id="tx00000001", error=None)
    selected = select(make_selection(ids=["tx00000001"]), st)
    assert _ids(selected) == [a, b, c] and selected.total == 3 and selected.missing == []
    assert _ids(select(make_selection(ids=["tx00000001"], since=_iso(1001)), st)) == [c]


def test_a_time_range_streams_the_ledger(st: Stores) -> None:
    """--since/--until select the ledger's notifications received in the window, invalid ones included,
    with their count."""
    _noted(st, "1000-0", "tx00000001")
    b = _noted(st, "2000-0", None, status="invalid")
    c = _noted(st, "3000-0", "tx00000003", done=True)
    _noted(st, "4000-0", "tx00000004")
    selected = select(make_selection(since=_iso(2000), until=_iso(3000)), st)
    assert selected.total == 2 and _ids(selected) == [b, c]


def test_unprocessed_selects_unfinished_entries_of_the_ledger_and_the_buffer(st: Stores) -> None:
    """--unprocessed selects the ledger's unfinished notifications and the buffer's pending entries not
    drained yet, and leaves out finished and invalid ones."""
    _noted(st, "1000-0", "tx00000001", done=True)
    left = _noted(st, "2000-0", "tx00000002")
    _noted(st, "2500-0", None, status="invalid")
    buffered = st.archive.append("deposit", b"{}", status="valid", transaction_id="tx00000003", error=None)
    st.archive.append("deposit", b"{}", status="invalid", transaction_id=None, error="bad")
    assert _ids(select(make_selection(unprocessed=True), st)) == [left, buffered]


def test_dlq_selects_open_letters_and_names_those_stored_nowhere(st: Stores) -> None:
    """--dlq (as the backtest reads it) selects the open dead letters' notifications (ledger or buffer),
    skips letters whose transaction is final, and names the entries neither holds."""
    kept = _noted(st, "1000-0", "tx00000001", done=True)
    buffered = st.archive.append("deposit", b"{}", status="valid", transaction_id="tx00000002", error=None)
    final = _noted(st, "1500-0", "tx00000004", done=True)
    st.ledger.add_dead_letter(kept, "tx00000001", "unexpected KeyError", "unexpected_error", 1)
    st.ledger.add_dead_letter(buffered, "tx00000002", "unexpected KeyError", "unexpected_error", 1)
    st.ledger.add_dead_letter("1-0", "tx00000003", "unexpected KeyError", "unexpected_error", 1)
    st.ledger.add_dead_letter(final, "tx00000004", "unexpected KeyError", "unexpected_error", 1)
    st.ledger.write(None, TransactionRecord("tx00000004", transaction_type="deposit").moved(State.REJECTED))
    selected = select(make_selection(dlq=True), st)
    assert _ids(selected) == [kept, buffered] and selected.missing == ["1-0"]


def test_the_command_exits_2_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    """`vipflow replay --since nonsense` exits 2 and names --since."""
    assert main(["replay", "--since", "nonsense"]) == 2
    assert "--since: 'nonsense' is not an ISO time" in capsys.readouterr().err


def test_the_command_refuses_rules_without_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    """--rules without --dry-run exits 2: rules only matter to a backtest."""
    assert main(["replay", "--unprocessed", "--rules", "rules/default"]) == 2
    assert "--rules only goes with --dry-run" in capsys.readouterr().err


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_dry_run_without_a_selection_backtests_every_transaction(st: Stores, redis_url: str, sqlite_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`vipflow replay --dry-run` with nothing selected decides every transaction in the ledger."""
    for i, at in enumerate((1_000, 2_000_000_000_000, 3_000_000_000_000)):
        st.ledger.add_notifications([archived_note(f"{at}-0", f"tx{i:08d}", received_at_ms=at)])
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    monkeypatch.setenv("VIPFLOW_REDIS__URL", redis_url)
    monkeypatch.setenv("VIPFLOW_RULES__PATH", str(ROOT / "rules" / "default"))
    assert main(["replay", "--dry-run", "--json"]) == 0
    totals = json.loads(capsys.readouterr().out.splitlines()[-1])["totals"]
    assert totals["transactions"] == 3 and totals["never_decided"] + totals["errors"] == 3
