"""The hot path's PostgreSQL connections: a few per process, lent to one statement at a time, in autocommit,
set up once, replaced when they break, at most ``MAX_OPEN`` open."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from worker.errors import LedgerUnavailable
from worker.ledger import Ledger, hotconn
from worker.ledger.commit import fetch_one_postgresql

_PID = "SELECT pg_backend_pid() AS pid, current_setting('plan_cache_mode') AS plans"


@pytest.fixture
def led(pg_url: str) -> Iterator[Ledger]:
    with Ledger.open(pg_url) as ledger:
        yield ledger


def _backend(led: Ledger) -> int:
    row = fetch_one_postgresql(led.engine, _PID, (), "read the backend pid")
    assert row is not None
    return int(row["pid"])


def _sessions(led: Ledger, pids: set[int]) -> int:
    with led.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                                {"pids": list(pids)}).scalar_one())


def test_statements_one_after_another_share_one_connection_whichever_thread_runs_them(led: Ledger) -> None:
    """A connection given back is the next one lent (newest first), to this thread or another."""
    first = _backend(led)
    assert _backend(led) == first
    other: list[int] = []
    thread = threading.Thread(target=lambda: other.append(_backend(led)))
    thread.start()
    thread.join(10)
    assert other == [first]


def test_a_connection_is_set_up_for_generic_plans(led: Ledger) -> None:
    """Each hot connection plans its statements once (plan_cache_mode), and compresses with lz4 when the
    server can."""
    row = fetch_one_postgresql(led.engine, "SELECT current_setting('plan_cache_mode') AS plans, "
                               "current_setting('default_toast_compression') AS toast, "
                               "(SELECT setting FROM pg_settings WHERE name = 'default_toast_compression') AS s, "
                               "(SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression') AS vals",
                               (), "read the settings")
    assert row is not None
    assert row["plans"] == "force_generic_plan"
    assert row["toast"] == ("lz4" if "lz4" in row["vals"] else "pglz")


def test_statements_at_the_same_time_get_connections_of_their_own_up_to_the_limit(led: Ledger) -> None:
    """MAX_OPEN statements at once run on MAX_OPEN backends; one more waits until one is given back."""
    limit = hotconn.MAX_OPEN
    inside = threading.Barrier(limit + 1)
    release = threading.Event()
    pids: list[int] = []

    def hold(conn: object) -> None:
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute("SELECT pg_backend_pid()")
            pids.append(cur.fetchone()[0])
        inside.wait(10)
        release.wait(10)

    holders = [threading.Thread(target=lambda: hotconn.run(led.engine, hold, ())) for _ in range(limit)]
    for h in holders:
        h.start()
    inside.wait(10)  # every holder has its connection
    assert len(set(pids)) == limit
    late: list[int] = []
    waiter = threading.Thread(target=lambda: late.append(_backend(led)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not late, "a statement past the limit ran without waiting"
    release.set()
    waiter.join(10)
    for h in holders:
        h.join(10)
    assert late and late[0] in pids  # it ran on a connection given back, not a new one


def test_a_statement_that_waits_too_long_for_a_connection_is_told_the_ledger_is_unavailable(
        led: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection lent for longer than WAIT_S: LedgerUnavailable, nothing run."""
    monkeypatch.setattr(hotconn, "WAIT_S", 0.2)
    release = threading.Event()
    inside = threading.Barrier(hotconn.MAX_OPEN + 1)

    def hold(_conn: object) -> None:
        inside.wait(10)
        release.wait(10)

    holders = [threading.Thread(target=lambda: hotconn.run(led.engine, hold, ())) for _ in range(hotconn.MAX_OPEN)]
    for h in holders:
        h.start()
    inside.wait(10)
    try:
        with pytest.raises(LedgerUnavailable, match="busy"):
            _backend(led)
    finally:
        release.set()
        for h in holders:
            h.join(10)
    assert _backend(led) > 0  # the connections came back


def test_a_broken_connection_fails_once_then_is_replaced(led: Ledger) -> None:
    """The server ends the session: that call raises LedgerUnavailable, the next one reconnects."""
    first = _backend(led)
    with led.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    with pytest.raises(LedgerUnavailable):
        _backend(led)
    assert _backend(led) not in (first, 0)


def test_warm_opens_the_connections_before_the_first_statement(led: Ledger) -> None:
    """Ledger.warm opens MAX_OPEN connections, left idle; statements then find them (none opened)."""
    assert led.warm() == hotconn.MAX_OPEN
    with led.engine.connect() as conn:
        idle = {int(p) for p in conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query LIKE 'SET default_toast_compression%'")).scalars()}
    assert len(idle) >= hotconn.MAX_OPEN
    assert _backend(led) in idle


def test_closing_the_ledger_ends_the_sessions(pg_url: str) -> None:
    """Ledger.close ends the hot path's sessions on the server as well as the pool's."""
    ledger = Ledger.open(pg_url)
    ledger.warm()
    pid = _backend(ledger)
    ledger.close()
    deadline = time.monotonic() + 10  # the server ends a session a moment after its client left
    with Ledger.open(pg_url) as check:
        while _sessions(check, {pid}):
            assert time.monotonic() < deadline, "the session is still there"
            time.sleep(0.02)


def test_a_forked_child_makes_its_own_connection_and_leaves_the_parents_alone(led: Ledger) -> None:
    """After fork the child never uses its parent's connection; the parent's keeps working."""
    parent = _backend(led)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            mine = _backend(led)
            os.write(write, str(mine).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(child, 0)
    got = os.read(read, 64).decode()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert int(got) != parent
    assert _backend(led) == parent
