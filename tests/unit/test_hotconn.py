"""The hot path's own PostgreSQL connection per thread: kept, in autocommit, replaced when it breaks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from worker.errors import LedgerUnavailable
from worker.ledger import Ledger
from worker.ledger.commit import fetch_one_postgresql

_PID = "SELECT pg_backend_pid() AS pid, current_setting('transaction_isolation') AS iso"


@pytest.fixture
def led(pg_url: str) -> Iterator[Ledger]:
    with Ledger.open(pg_url) as ledger:
        yield ledger


def _backend(led: Ledger) -> int:
    row = fetch_one_postgresql(led.engine, _PID, (), "read the backend pid")
    assert row is not None
    return int(row["pid"])


def test_a_thread_keeps_one_connection_and_threads_have_their_own(led: Ledger) -> None:
    """The same thread is served by one server backend each time; another thread by another one."""
    first = _backend(led)
    assert _backend(led) == first
    other: list[int] = []
    thread = threading.Thread(target=lambda: other.append(_backend(led)))
    thread.start()
    thread.join(10)
    assert other and other[0] != first


def test_a_broken_connection_fails_once_then_is_replaced(led: Ledger) -> None:
    """The server ends the thread's session: that call raises LedgerUnavailable, the next one reconnects."""
    first = _backend(led)
    with led.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    with pytest.raises(LedgerUnavailable):
        _backend(led)
    assert _backend(led) not in (first, 0)


def test_closing_the_ledger_ends_the_sessions(pg_url: str) -> None:
    """Ledger.close ends the hot path's sessions on the server as well as the pool's."""
    ledger = Ledger.open(pg_url)
    pid = _backend(ledger)
    ledger.close()
    deadline = time.monotonic() + 10  # the server ends a session a moment after its client left
    with Ledger.open(pg_url) as check, check.engine.connect() as conn:
        while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar():
            assert time.monotonic() < deadline, "the session is still there"
            time.sleep(0.02)


def test_a_thread_that_ends_leaves_no_session_open(led: Ledger) -> None:
    """A thread of a pool that shrinks (the web service's) ends: the server session it used ends too."""
    used: list[int] = []
    thread = threading.Thread(target=lambda: used.append(_backend(led)))
    thread.start()
    thread.join(10)
    del thread
    deadline = time.monotonic() + 10
    with led.engine.connect() as conn:
        while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": used[0]}).scalar():
            assert time.monotonic() < deadline, "the ended thread's session is still open"
            time.sleep(0.02)
