"""The ledger's contract, on SQLite and on PostgreSQL: what a write keeps, what it refuses, what readers see.

Tests that take ``ledger_url`` run once per backend; those that take ``pg_url``
prove what only PostgreSQL enforces (the append-only trigger, prune's SET LOCAL).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from rules.loader import load_ruleset_file
from tests.conftest import ROOT, archived_note
from worker.ledger import Ledger, NotificationSeen, State, TransactionRecord
from worker.ledger import prune as prune_module
from worker.ledger import tables as t
from worker.ledger.states import IllegalTransition
from worker.store.locks import LockLost

DECISION = {"outcome": "approve", "matched": ["small-ach"], "ruleset": "withdraw", "version": 7,
            "content_hash": "ab" * 32}


@pytest.fixture
def led(ledger_url: str) -> Iterator[Ledger]:
    """A Ledger on the backend under test."""
    with Ledger.open(ledger_url) as ledger:
        yield ledger


def _rows(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.metadata.tables[table])).scalar_one())


def _received(txid: str, entry_id: str = "1700000000000-0") -> TransactionRecord:
    seen = NotificationSeen(entry_id=entry_id, kind="withdraw", status="valid", received_at="2023-11-14T22:13:20Z")
    return TransactionRecord(txid, transaction_type="withdraw", amount="250.00",
                             references={"vip_card_number": "****4321"}).with_notification(seen)


# --- transactions and events -----------------------------------------------------------------------

def test_a_written_record_loads_back_as_written(led: Ledger) -> None:
    """load returns the record write stored, with the seq a next write must start from."""
    rec = replace(_received("tx-1").moved(State.DECIDED), decision=DECISION, facts={"amount": "250.00"},
                  deliveries=1)
    stored = led.write(None, rec)
    loaded = led.load("tx-1")
    assert loaded == stored
    assert (loaded.record.amount, loaded.record.state, loaded.record.decision) == ("250.00", State.DECIDED, DECISION)
    assert loaded.record.references == {"vip_card_number": "****4321"}


def test_an_unknown_transaction_loads_as_none(led: Ledger) -> None:
    """load of a transaction the ledger never saw is None, not an error."""
    assert led.load("tx-never") is None


def test_events_are_appended_in_order_with_seq_one_to_n(led: Ledger) -> None:
    """Each write appends the events of its change, numbered 1..n across writes, in the order they happened."""
    s1 = led.write(None, replace(_received("tx-1"), deliveries=1))
    decided = replace(s1.record.moved(State.DECIDED), decision=DECISION).with_action("freeze", "started")
    s2 = led.write(s1, decided)
    s3 = led.write(s2, s2.record.with_action("freeze", "done", {"hold_id": "h-1"}).moved(State.FROZEN))
    events = led.events("tx-1")
    assert [e.seq for e in events] == list(range(1, len(events) + 1)) and s3.seq == len(events)
    assert [(e.kind, e.name, e.status) for e in events] == [
        ("received", None, None), ("delivered", None, None), ("decided", "approve", None),
        ("action", "freeze", "started"), ("action", "freeze", "done")]
    assert [e.state for e in events][-1] == "frozen"


def test_a_stale_write_raises_lock_lost_and_writes_nothing(led: Ledger) -> None:
    """A writer starting from an old seq (its lock expired, another wrote since) changes nothing."""
    s1 = led.write(None, _received("tx-1"))
    s2 = led.write(s1, s1.record.moved(State.DECIDED))
    events_before = led.events("tx-1")
    with pytest.raises(LockLost):
        led.write(s1, s1.record.moved(State.REVIEW).with_action("review", "done", {"reason": "stale"}))
    assert led.load("tx-1") == s2
    assert led.events("tx-1") == events_before


def test_a_second_creator_of_the_same_transaction_loses(led: Ledger) -> None:
    """Two writers that both saw no record: the second one raises LockLost and writes nothing."""
    first = led.write(None, _received("tx-1"))
    with pytest.raises(LockLost):
        led.write(None, _received("tx-1", entry_id="1700000000001-0"))
    assert led.load("tx-1") == first


def test_an_illegal_state_change_raises_and_writes_nothing(led: Ledger) -> None:
    """Writing an approved transaction back into review raises IllegalTransition; the ledger keeps approved."""
    approved = led.write(None, replace(_received("tx-1"), state=State.APPROVED))
    events_before = led.events("tx-1")
    with pytest.raises(IllegalTransition, match="approved -> review"):
        led.write(approved, replace(approved.record, state=State.REVIEW))
    assert led.load("tx-1") == approved
    assert led.events("tx-1") == events_before


def test_a_human_action_is_an_event_with_its_actor(led: Ledger) -> None:
    """A reviewer's approval becomes a ``human`` event carrying the actor from its result."""
    s1 = led.write(None, _received("tx-1").moved(State.REVIEW))
    led.write(s1, s1.record.with_action("review_approve", "done", {"actor": "os:alice"}).moved(State.APPROVING))
    human = [e for e in led.events("tx-1") if e.kind == "human"]
    assert [(e.name, e.actor) for e in human] == [("review_approve", "os:alice")]


# --- notifications ---------------------------------------------------------------------------------

def test_a_notification_reads_back_exactly_as_received(led: Ledger) -> None:
    """The raw body, route, receipt time and status come back byte for byte."""
    note = archived_note("1700000000000-0", "tx-1")
    led.add_notification(note)
    assert led.notification(note.entry_id) == note


def test_a_notification_is_stored_once(led: Ledger) -> None:
    """Adding the same entry again, alone or in a batch, keeps one row (idempotent)."""
    note = archived_note("1700000000000-0", "tx-1")
    led.add_notification(note)
    led.add_notification(note)
    led.add_notifications([note, note])
    assert led.notifications_of("tx-1") == [note]
    assert _rows(led.engine, "notifications") == 1


def test_iter_notifications_pages_in_order_over_many_batches(led: Ledger) -> None:
    """Over more rows than one batch, with ties in receipt time, every notification comes once, oldest first."""
    notes = [archived_note(f"{1000 + i // 3}-{i % 3}", f"tx-{i}", received_at_ms=1000 + i // 3) for i in range(25)]
    shuffled = notes[:]
    random.Random(7).shuffle(shuffled)
    led.add_notifications(shuffled)
    got = list(led.iter_notifications(batch=4))
    assert [n.entry_id for n in got] == [n.entry_id for n in notes]


def test_iter_notifications_keeps_to_its_time_window(led: Ledger) -> None:
    """since_ms and until_ms bound the receipt time, both ends included."""
    led.add_notifications([archived_note(f"{ms}-0", f"tx-{ms}", received_at_ms=ms) for ms in range(1000, 1010)])
    got = [n.received_at for n in led.iter_notifications(since_ms=1002, until_ms=1006, batch=2)]
    assert got == [1002, 1003, 1004, 1005, 1006]


def test_unprocessed_lists_valid_and_conflicting_notifications_not_done(led: Ledger) -> None:
    """Notifications whose task never finished are unprocessed, oldest first; invalid and done ones are not."""
    waiting = archived_note("1-0", "tx-1", received_at_ms=1)
    invalid = archived_note("2-0", None, received_at_ms=2, status="invalid")
    done = archived_note("3-0", "tx-3", received_at_ms=3)
    conflict = archived_note("4-0", "tx-4", received_at_ms=4, status="conflict")
    led.add_notifications([conflict, done, invalid, waiting], done=[done.entry_id])
    assert led.unprocessed() == [waiting, conflict]
    led.mark_done(waiting.entry_id)
    assert led.unprocessed() == [conflict]


def test_unprocessed_since_leaves_out_older_notifications(led: Ledger) -> None:
    """With since_ms, only unfinished notifications received at or after it (the recovery sweep's window)."""
    old, new = archived_note("1-0", "tx-old", received_at_ms=1000), archived_note("2-0", "tx-new", received_at_ms=2000)
    led.add_notifications([old, new])
    assert led.unprocessed(since_ms=2000) == [new]
    assert led.unprocessed(since_ms=1000) == [old, new]


# --- dead letters, rule texts, readers -------------------------------------------------------------

def test_dead_letters_are_open_until_their_transaction_is_final(led: Ledger) -> None:
    """add_dead_letter keeps them, oldest first, with their transaction's state; a letter leaves the open
    list when its transaction is final (never by being re-queued, which only records when), one without a
    transaction once re-queued; every letter stays in the ledger."""
    led.add_dead_letter("1-0", "tx-1", "VIP Connect timed out", "retries", 5)
    led.add_dead_letter("2-0", "tx-2", "wallet refused", "error", 1)
    led.add_dead_letter("1-0", "tx-1", "VIP Connect timed out again", "retries", 5)
    led.add_dead_letter("3-0", None, "not a notification", "unexpected_error", 1)
    assert [d.error for d in led.dead_letters()] == [
        "VIP Connect timed out", "wallet refused", "VIP Connect timed out again", "not a notification"]
    assert led.dead_letter_count() == 4 and {d.state for d in led.dead_letters()} == {None}
    assert led.mark_requeued("1-0") == 2 and led.mark_requeued("3-0") == 1
    assert [d.entry_id for d in led.dead_letters()] == ["1-0", "2-0", "1-0"]
    stored = led.write(None, TransactionRecord("tx-1", transaction_type="deposit", amount="5.00")
                       .moved(State.REJECTED))
    assert stored.record.state == State.REJECTED
    assert [d.entry_id for d in led.dead_letters()] == ["2-0"] and led.dead_letter_count() == 1
    every = led.dead_letters(include_closed=True)
    assert len(every) == 4 and [d.requeued_at is not None for d in every] == [True, False, True, True]
    assert [d.state for d in every] == ["rejected", None, "rejected", None]


def test_a_ruleset_text_is_stored_once_and_read_back(led: Ledger) -> None:
    """The rule file's exact text is kept once under its content hash, however many writers remember it."""
    path = ROOT / "rules" / "default" / "withdraw.yaml"
    ruleset = load_ruleset_file(path)
    led.remember_rulesets([ruleset])
    Ledger(led.engine).remember_rulesets([ruleset])  # another process, with its own cache
    stored = led.ruleset(ruleset.content_hash)
    assert stored is not None
    assert stored["text"] == Path(path).read_text(encoding="utf-8")
    assert (stored["name"], stored["version"]) == (ruleset.name, ruleset.version)
    assert _rows(led.engine, "rulesets") == 1
    assert led.ruleset("0" * 64) is None


def test_in_state_lists_a_state_oldest_first(led: Ledger) -> None:
    """in_state(review) gives the transactions in review in the order they entered it, with limit and offset."""
    for txid in ("tx-a", "tx-b", "tx-c"):
        led.write(None, _received(txid).moved(State.REVIEW))
    led.write(None, replace(_received("tx-d"), state=State.APPROVED))
    queue = led.in_state(State.REVIEW)
    assert [r.transaction_id for r, _ in queue] == ["tx-a", "tx-b", "tx-c"]
    assert [since for _, since in queue] == sorted(since for _, since in queue)
    assert [r.transaction_id for r, _ in led.in_state(State.REVIEW, limit=1, offset=1)] == ["tx-b"]
    assert [r.transaction_id for r, _ in led.in_state(State.APPROVED)] == ["tx-d"]


def test_review_stats_counts_the_queue_its_oldest_age_and_the_overdue(led: Ledger) -> None:
    """review_stats gives how many wait, the oldest one's age and how many are older than max_age_s."""
    for txid in ("tx-a", "tx-b"):
        led.write(None, _received(txid).moved(State.REVIEW))
    (_, first), (_, second) = led.in_state(State.REVIEW)
    max_age = (second - first) / 2
    now = second + max_age / 2  # tx-a is older than max_age, tx-b younger
    count, oldest, overdue = led.review_stats(max_age, now=now)
    assert (count, overdue) == (2, 1)
    assert oldest == pytest.approx(now - first)


def test_review_stats_of_an_empty_queue_is_zero(led: Ledger) -> None:
    """With nobody waiting, the queue is 0 long, 0 seconds old, with 0 overdue."""
    assert led.review_stats(60) == (0, 0.0, 0)


# --- prune on both backends ------------------------------------------------------------------------

def _final_transaction(led: Ledger, txid: str, n: int) -> None:
    note = archived_note(f"{n}-0", txid, received_at_ms=n)
    led.add_notifications([note], done=[note.entry_id])
    s = led.write(None, _received(txid, note.entry_id).moved(State.DECIDED))
    led.write(s, s.record.with_action("reject", "done").moved(State.REJECTED))
    led.add_dead_letter(note.entry_id, txid, "gave up once", "retries", 5)


def test_prune_deletes_in_batches_and_counts_every_batch(led: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prune over more transactions than one batch deletes them all and records the sum of its batches."""
    for i in range(5):
        _final_transaction(led, f"tx-{i}", i + 1)
    events = _rows(led.engine, "events")
    monkeypatch.setattr(prune_module, "now", lambda: prune_module.time.time() + 31 * prune_module.DAY_S)
    report = prune_module.prune(led.engine, retention_days=30, actor="os:test", batch=2)
    assert (report.transactions, report.events, report.notifications, report.dead_letters) == (5, events, 5, 5)
    assert {name: _rows(led.engine, name) for name in ("transactions", "events", "notifications",
                                                        "notification_done", "dead_letters")} == dict.fromkeys(
        ("transactions", "events", "notifications", "notification_done", "dead_letters"), 0)
    with led.engine.connect() as conn:
        run = conn.execute(select(t.prune_runs)).one()._mapping
    assert (run["transactions"], run["events"], run["notifications"]) == (5, events, 5)


def test_prune_deletes_old_notifications_of_no_transaction_in_batches(led: Ledger) -> None:
    """Notifications of no transaction received before the cutoff go, over several batches; newer ones stay."""
    now_ms = int(prune_module.time.time() * 1000)
    old_ms = now_ms - 31 * prune_module.DAY_S * 1000
    old = [archived_note(f"{old_ms + i // 2}-{i % 2}", None, received_at_ms=old_ms + i // 2, status="invalid")
           for i in range(5)]
    recent = archived_note(f"{now_ms}-0", None, received_at_ms=now_ms, status="invalid")
    led.add_notifications([*old, recent], done=[n.entry_id for n in old])
    report = prune_module.prune(led.engine, retention_days=30, actor="os:test", batch=2)
    assert report.notifications == 5
    assert [n.entry_id for n in led.iter_notifications()] == [recent.entry_id]
    assert _rows(led.engine, "notification_done") == 0


def test_a_dry_run_counts_exactly_what_prune_then_deletes(led: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """prune(dry_run=True) changes nothing and predicts the counts of the real prune that follows."""
    for i in range(3):
        _final_transaction(led, f"tx-{i}", i + 1)
    led.add_notification(archived_note("9-0", None, received_at_ms=9, status="invalid"))
    led.write(None, _received("tx-waiting", "10-0").moved(State.REVIEW))
    monkeypatch.setattr(prune_module, "now", lambda: prune_module.time.time() + 31 * prune_module.DAY_S)
    dry = prune_module.prune(led.engine, retention_days=30, actor="os:test", dry_run=True)
    assert _rows(led.engine, "transactions") == 4 and _rows(led.engine, "prune_runs") == 0
    real = prune_module.prune(led.engine, retention_days=30, actor="os:test")
    counted = ("transactions", "events", "notifications", "dead_letters")
    assert [getattr(dry, k) for k in counted] == [getattr(real, k) for k in counted] == [3, dry.events, 4, 3]
    assert dry.events > 0 and led.load("tx-waiting") is not None


# --- PostgreSQL: the database itself keeps the ledger append-only --------------------------------------

REFUSED = [
    ("UPDATE events SET kind = 'edited'", "events"),
    ("DELETE FROM events", "events"),
    ("UPDATE notifications SET status = 'invalid'", "notifications"),
    ("DELETE FROM notifications", "notifications"),
    ("UPDATE notification_done SET at = 0", "notification_done"),
    ("DELETE FROM notification_done", "notification_done"),
]


@pytest.mark.parametrize(("statement", "table"), REFUSED, ids=[s for s, _ in REFUSED])
def test_postgresql_refuses_to_change_or_delete_the_append_only_tables(pg_url: str, statement: str,
                                                                       table: str) -> None:
    """A raw UPDATE or DELETE of an event, a notification or a done mark is refused by the database itself."""
    ledger = Ledger.open(pg_url)
    try:
        _final_transaction(ledger, "tx-1", 1)
        before = _rows(ledger.engine, table)
        with pytest.raises(DBAPIError, match="append-only"), ledger.engine.begin() as conn:
            conn.execute(text(statement))
        assert _rows(ledger.engine, table) == before > 0
    finally:
        ledger.engine.dispose()


@pytest.mark.parametrize("table", ["events", "notifications", "notification_done"])
def test_sqlite_refuses_to_change_the_append_only_tables(sqlite_url: str, table: str) -> None:
    """On SQLite too, a raw UPDATE of an append-only table is refused by a trigger."""
    ledger = Ledger.open(sqlite_url)
    try:
        _final_transaction(ledger, "tx-1", 1)
        column = {"events": "kind = 'edited'", "notifications": "status = 'invalid'",
                  "notification_done": "at = 0"}[table]
        with pytest.raises(DBAPIError, match="append-only"), ledger.engine.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET {column}"))  # noqa: S608 - fixed names, no input
    finally:
        ledger.engine.dispose()


def test_prune_deletes_on_postgresql_and_records_its_run(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL prune's delete gets past the trigger (SET LOCAL) and its run is a prune_runs row."""
    ledger = Ledger.open(pg_url)
    try:
        _final_transaction(ledger, "tx-old", 1)
        ledger.write(None, _received("tx-waiting").moved(State.REVIEW))
        monkeypatch.setattr(prune_module, "now", lambda: prune_module.time.time() + 31 * prune_module.DAY_S)
        report = prune_module.prune(ledger.engine, retention_days=30, actor="config:ops")
        assert ledger.load("tx-old") is None and ledger.events("tx-old") == []
        assert ledger.load("tx-waiting") is not None
        with ledger.engine.connect() as conn:
            run = conn.execute(select(t.prune_runs)).one()._mapping
        assert (run["id"], run["actor"], run["transactions"], run["retention_days"]) == (
            report.run_id, "config:ops", 1, 30)
        assert run["finished_at"] is not None and run["cutoff_at"] == pytest.approx(report.cutoff_at)
    finally:
        ledger.engine.dispose()


def test_prune_permission_ends_with_its_database_transaction(pg_url: str) -> None:
    """After a prune, a plain DELETE on the same pooled connections is refused again (SET LOCAL, not SET)."""
    ledger = Ledger.open(pg_url)
    try:
        _final_transaction(ledger, "tx-1", 1)
        prune_module.prune(ledger.engine, retention_days=30, actor="os:test")
        with pytest.raises(DBAPIError, match="append-only"), ledger.engine.begin() as conn:
            conn.execute(text("DELETE FROM events"))
    finally:
        ledger.engine.dispose()
