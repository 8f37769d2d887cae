"""Named lists in the ledger: each change a version with who and when, an append-only history (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from rules.book import RuleBook
from rules.errors import RuleFilesInvalid
from rules.loader import parse_ruleset
from worker.ledger import Ledger
from worker.lists.csvfile import read_csv
from worker.lists.holder import ListHolder
from worker.lists.store import ListRefused, ListStore


@pytest.fixture
def store(ledger_url: str) -> Iterator[ListStore]:
    with Ledger.open(ledger_url) as ledger:
        yield ListStore(ledger.engine, max_entries=10)


def test_a_change_is_a_version_with_its_actor_and_reason(store: ListStore) -> None:
    """create is v1; each add or remove that changes something is the next version, with who and why."""
    store.create("blocked-cards", "card", "os:alice", "cards we refuse")
    added = store.add("blocked-cards", ["7210695258", " 1234567 ", "1234567"], "os:alice", note="chargebacks")
    removed = store.remove("blocked-cards", ["1234567"], "config:fraud")
    assert (added.version, added.added, removed.version, removed.removed) == (2, 2, 3, 1)
    history = store.history("blocked-cards")
    assert [(c.version, c.action, c.actor, c.added, c.removed, c.note) for c in history] == [
        (1, "create", "os:alice", 0, 0, "cards we refuse"),
        (2, "add", "os:alice", 2, 0, "chargebacks"),
        (3, "remove", "config:fraud", 0, 1, None),
    ]
    info = store.info("blocked-cards")
    assert (info.version, info.entries, info.updated_by) == (3, 1, "config:fraud")
    assert store.entries("blocked-cards") == ["7210695258"]


def test_a_change_that_changes_nothing_makes_no_version(store: ListStore) -> None:
    """Adding what is there, or removing what is not, leaves the list at its version."""
    store.create("watch", "patron", "os:alice")
    store.add("watch", ["P-1"], "os:alice")
    assert store.add("watch", ["P-1"], "os:bob").added == 0
    assert store.remove("watch", ["P-2"], "os:bob").removed == 0
    assert store.info("watch").version == 2
    assert len(store.history("watch")) == 2


def test_a_bad_entry_changes_nothing_and_is_named_by_place(store: ListStore) -> None:
    """One bad value refuses the whole change, naming its place and the expected form, never the value."""
    store.create("routes", "routing", "os:alice")
    with pytest.raises(ListRefused) as info:
        store.add("routes", ["021000021", "12-34"], "os:alice")
    assert str(info.value) == "entry 2: a bank routing number is 8 or 9 digits"
    assert "12-34" not in str(info.value)
    assert store.info("routes").version == 1


def test_unknown_lists_names_and_kinds_are_refused(store: ListStore) -> None:
    """No such list, a bad name, a bad kind, a name in use: each a ListRefused (exit 2) saying what to do."""
    with pytest.raises(ListRefused, match="no list named 'nope'"):
        store.add("nope", ["1234567"], "os:alice")
    with pytest.raises(ListRefused, match="list name 'Bad Name'"):
        store.create("Bad Name", "card", "os:alice")
    with pytest.raises(ListRefused, match="kind 'ip'"):
        store.create("nets", "ip", "os:alice")
    store.create("nets", "cidr", "os:alice")
    with pytest.raises(ListRefused, match="exists already"):
        store.create("nets", "card", "os:alice")


def test_a_list_past_its_bound_is_refused_whole(store: ListStore) -> None:
    """An add that would take the list past lists.max_entries changes nothing."""
    store.create("cards", "card", "os:alice")
    with pytest.raises(ListRefused, match=r"would hold 11 entries, more than lists\.max_entries"):
        store.add("cards", [f"{n:07d}" for n in range(11)], "os:alice")
    assert store.info("cards").entries == 0


def test_replace_makes_the_list_hold_exactly_the_file_in_one_version(store: ListStore) -> None:
    """An import with --replace adds what is new and removes what is not in the file, as one version."""
    store.create("nets", "cidr", "os:alice")
    store.add("nets", ["10.0.0.0/8", "192.0.2.1"], "os:alice")
    change = store.replace_all("nets", ["10.0.0.0/8", "2001:db8::/32"], "os:bob", source="nets.csv sha256:x")
    assert (change.version, change.added, change.removed, change.source) == (3, 1, 1, "nets.csv sha256:x")
    assert store.entries("nets") == ["10.0.0.0/8", "2001:db8::/32"]


def test_any_version_can_be_rebuilt_from_the_history(store: ListStore) -> None:
    """load_version gives the list as it was at each version; load gives it now."""
    store.create("cards", "card", "os:alice")
    store.add("cards", ["1111111", "2222222"], "os:alice")
    store.remove("cards", ["1111111"], "os:alice")
    store.add("cards", ["1111111", "3333333"], "os:alice")
    assert store.load_version("cards", 2).contains("1111111") is True
    assert store.load_version("cards", 3).contains("1111111") is False
    now = store.load("cards")
    assert (now.version, now.size) == (4, 3)
    assert store.has("cards", "2222222") == 2
    assert store.has("cards", "9999999") is None


def test_holder_of_an_address_is_the_narrowest_range_holding_it(store: ListStore) -> None:
    """A cidr list holds an address inside any of its ranges, as the rules match; the narrowest range is named."""
    store.create("nets", "cidr", "os:alice")
    store.add("nets", ["10.0.0.0/8", "0.0.0.0/0"], "os:alice")
    store.add("nets", ["10.9.9.0/24"], "os:alice")
    assert store.holder("nets", "10.9.9.9") == ("10.9.9.0/24", 3)
    assert store.holder("nets", "10.1.1.1") == ("10.0.0.0/8", 2)
    assert store.holder("nets", "192.0.2.1") == ("0.0.0.0/0", 2)
    assert store.has("nets", "10.9.9.9") == 3
    assert store.holder("nets", "2001:db8::1") is None


def test_the_history_is_append_only(ledger_url: str) -> None:
    """The database refuses an UPDATE of a list's recorded version (a trigger on both SQLite and PostgreSQL)."""
    with Ledger.open(ledger_url) as ledger:
        ListStore(ledger.engine).create("cards", "card", "os:alice")
        with pytest.raises(SQLAlchemyError, match="append-only"), ledger.engine.begin() as conn:
            conn.execute(text("UPDATE list_changes SET actor = 'someone else'"))


def test_a_csv_import_names_the_bad_line_and_imports_nothing(tmp_path: Path, store: ListStore) -> None:
    """A header, blanks and comments are skipped; a bad row names FILE:LINE and nothing of the file is imported."""
    store.create("cards", "card", "os:alice")
    good = tmp_path / "cards.csv"
    good.write_text("vip_card_number,note\n7210695258,chargeback\n\n# from the fraud team\n1234567,x\n",
                    encoding="utf-8")
    found = read_csv(good, "card")
    assert (found.values, found.rows) == (("7210695258", "1234567"), 2)
    assert found.source.startswith("cards.csv sha256:")
    bad = tmp_path / "bad.csv"
    bad.write_text("7210695258\n1234567\nnot-a-card\n", encoding="utf-8")
    with pytest.raises(ListRefused) as info:
        read_csv(bad, "card")
    assert str(info.value) == f"{bad}:3: a VIP card number is 6 to 19 digits; nothing was imported"
    assert store.info("cards").version == 1


def test_a_holder_picks_up_a_change_and_keeps_unchanged_lists(store: ListStore) -> None:
    """check() reads again only the lists whose version moved; current() is one consistent mapping."""
    store.create("cards", "card", "os:alice")
    store.create("nets", "cidr", "os:alice")
    holder = ListHolder(store)
    nets_before = holder.current()["nets"]
    assert holder.current()["cards"].contains("7210695258") is False
    assert holder.check() is False
    store.add("cards", ["7210695258"], "os:alice")
    assert holder.check() is True
    assert holder.current()["cards"].contains("7210695258") is True
    assert holder.current()["cards"].version == 2
    assert holder.current()["nets"] is nets_before
    assert REGISTRY.get_sample_value("vipflow_list_version", {"list": "cards"}) == 2
    assert REGISTRY.get_sample_value("vipflow_list_entries", {"list": "cards"}) == 1


def test_a_holder_refuses_rules_naming_a_list_the_ledger_lacks(store: ListStore) -> None:
    """require() raises RuleFilesInvalid at file:line for an unknown list, and accepts once it is created."""
    rules = ("ruleset: withdraw\nversion: 1\nrules:\n  - id: blocked\n"
             "    when: {vip_card_number: {in_list: blocked-cards}}\n    outcome: reject\n")
    book = RuleBook([parse_ruleset(rules.encode(), "withdraw.yaml")])
    holder = ListHolder(store)
    with pytest.raises(RuleFilesInvalid) as info:
        holder.require(book)
    assert info.value.problems[0].render().startswith("withdraw.yaml:5: rule 'blocked': unknown list 'blocked-cards'")
    store.create("blocked-cards", "card", "os:alice")
    holder.require(book)  # read again first: the list created a moment ago counts
