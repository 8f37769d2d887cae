"""Replay selections: parsing errors name the option; sources and time windows select the right entries."""

from __future__ import annotations

import pytest
import redis

from producers.cli import main
from worker.replay import SelectionError, make_selection, parse_time, select, stores


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


def test_a_time_without_offset_is_utc() -> None:
    """A naive time is read as UTC, and a date alone as its midnight."""
    assert parse_time("2024-05-01T00:00:00", "--since") == parse_time("2024-05-01T00:00:00+00:00", "--since")
    assert parse_time("2024-05-01", "--since") == 1714521600000
    assert parse_time("2024-05-01T02:00:00+02:00", "--since") == 1714521600000


def test_an_unknown_transaction_id_names_it(redis_url: str) -> None:
    """--id of a transaction that has nothing archived is refused naming the id."""
    st = stores(redis.Redis.from_url(redis_url), "t")
    st.archive.append("deposit", b"{}", status="valid", transaction_id="tx00000001", error=None)
    with pytest.raises(SelectionError, match=r"^--id: no archived notification for transaction tx99999999$"):
        select(make_selection(ids=["tx00000001", "tx99999999"]), st)


def test_ids_select_every_entry_of_the_transaction_in_the_window(redis_url: str) -> None:
    """--id selects the transaction's entries (duplicates included), oldest first, narrowed by time."""
    st = stores(redis.Redis.from_url(redis_url), "t")
    a = st.archive.append("deposit", b"{}", status="valid", transaction_id="tx00000001", error=None)
    st.archive.append("deposit", b"{}", status="valid", transaction_id="tx00000002", error=None)
    b = st.archive.append("deposit", b"{1}", status="conflict", transaction_id="tx00000001", error=None)
    refs, missing = select(make_selection(ids=["tx00000001"]), st)
    assert [r.entry_id for r in refs] == [a, b] and missing == []
    later = int(b.split("-")[0]) + 1
    assert select(make_selection(ids=["tx00000001"], since=_iso(later)), st)[0] == []


def test_unprocessed_selects_the_pending_entries_only(redis_url: str) -> None:
    """--unprocessed selects what was archived and never marked processed."""
    st = stores(redis.Redis.from_url(redis_url), "t")
    done = st.archive.append("deposit", b"{}", status="valid", transaction_id="tx00000001", error=None)
    left = st.archive.append("deposit", b"{}", status="valid", transaction_id="tx00000002", error=None)
    st.archive.mark_processed(done)
    assert [r.entry_id for r in select(make_selection(unprocessed=True), st)[0]] == [left]


def test_dlq_reports_letters_whose_entry_was_trimmed(redis_url: str) -> None:
    """--dlq selects the dead letters' entries and names those no longer archived."""
    st = stores(redis.Redis.from_url(redis_url), "t")
    kept = st.archive.append("deposit", b"{}", status="valid", transaction_id="tx00000001", error=None)
    st.deadletters.push(kept, "tx00000001", "unexpected KeyError", 1)
    st.deadletters.push("1-0", "tx00000002", "unexpected KeyError", 1)
    refs, missing = select(make_selection(dlq=True), st)
    assert [r.entry_id for r in refs] == [kept] and missing == ["1-0"]


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
