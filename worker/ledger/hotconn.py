"""The hot path's PostgreSQL connections: a few per process, shared by its threads, each in autocommit.

Each write of a transaction on PostgreSQL is one statement in autocommit (``pgwrite``). Taking
a connection from SQLAlchemy's pool for it and giving it back, and switching the driver's
autocommit on and off around it, cost about a quarter of the write's CPU in the worker
(profiled under the end-to-end bench). So the hot path keeps connections of its own: made from
the engine (``_ConnectionFairy.detach``: the engine's own connect settings and events apply),
in autocommit for good, and lent to one statement at a time: taking one is a ``list.pop``,
giving it back a ``list.append`` (both atomic in CPython), newest first, so the same few stay
warm. A statement takes a fraction of a millisecond of a task that waits tens of milliseconds
on VIP Connect: a worker of 32 threads keeps a handful of server backends busy, not 32 (an
earlier version kept one per thread: 64 backends for two workers, each paying its start, its
catalog caches and its plans, with the server's scheduling of them measured at about a seventh
of its CPU). At most ``MAX_OPEN`` are open per engine and process: a statement
that finds them all lent waits for one (a worker's first burst would otherwise open one per thread).

Each connection is set up once (:func:`_setup`): ``plan_cache_mode = force_generic_plan`` (the
hot statements find rows by primary key: one plan per connection and statement, instead of
planning the first five executions anew) and ``default_toast_compression = lz4`` where the
server has it (the transaction's record, a few kilobytes, is compressed on every write; lz4
costs a fraction of pglz's CPU, measured at about 6 % of the server's share under the bench).

A connection whose use failed is closed, never lent again (the task is retried meanwhile, as
with a pooled connection). :func:`close` closes an engine's idle connections and marks those
lent out to be closed when given back (``Ledger.close``; so does the engine's end, or the
interpreter's). After a fork the child never uses its parent's: it makes its own (and leaves
the parent's sockets alone).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import TimeoutError as PoolTimeout

T = TypeVar("T")

# Connections per engine and process: a statement that finds them all lent waits for one (at most
# WAIT_S seconds, then SQLAlchemy's pool TimeoutError, which the callers report as the ledger unavailable).
MAX_OPEN = 8
WAIT_S = 30.0

# Run once on each new connection, in autocommit; a setting the server refuses (an lz4-less build,
# a server older than 14) is left at the server's default.
_SETUP = ("SET plan_cache_mode = force_generic_plan", "SET default_toast_compression = lz4")


def _setup(conn: Any) -> None:
    for statement in _SETUP:
        try:
            conn.execute(statement)
        except Exception:  # a speed setting; the server's default works too
            if conn.closed:
                raise


class _Hot:
    """An engine's hot connections in this process: the idle ones (newest last), how many are open, and every
    live one. Taking an idle connection and giving it back take no lock (``list.pop`` and ``list.append``
    are atomic in CPython); the lock is for opening one, closing one, and waiting when all are lent."""

    def __init__(self) -> None:  # never holds the engine: the registry's weak key would never go
        self.pid = os.getpid()
        self.idle: list[tuple[Any, Any]] = []  # (fairy, psycopg connection), given back, newest last
        self.lock = threading.Lock()
        self.freed = threading.Condition(self.lock)  # a connection was given back or closed
        self.waiting = 0  # statements waiting for a connection (read without the lock by give)
        self.open = 0  # connections made and not yet closed (lent or idle), at most MAX_OPEN
        self.all: dict[int, Any] = {}  # id(fairy) -> fairy: every connection made and not yet closed
        self.closing = False

    def take(self, engine: Engine) -> tuple[Any, Any]:
        """An idle connection (the newest), or a new one while fewer than ``MAX_OPEN`` are open, or the first
        one given back within ``WAIT_S`` (else PoolTimeout): (pool fairy, detached; its psycopg connection)."""
        if self.pid != os.getpid():
            self._forked()
        found = self._idle()
        if found is not None:
            return found
        deadline = time.monotonic() + WAIT_S
        with self.lock:
            self.waiting += 1  # before looking again: a give() from now on sees it and wakes this one
            try:
                while True:
                    found = self._idle()
                    if found is not None:
                        return found
                    if self.open < MAX_OPEN:
                        self.open += 1
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise PoolTimeout(f"all {MAX_OPEN} of this process's ledger connections stayed busy "
                                          f"for {WAIT_S:.0f} s")
                    self.freed.wait(left)
            finally:
                self.waiting -= 1
        try:
            return self._make(engine)
        except BaseException:
            with self.lock:
                self.open -= 1
                self.freed.notify()
            raise

    def _idle(self) -> tuple[Any, Any] | None:
        """The newest idle connection that is still open, or None (closed ones met on the way are dropped)."""
        while True:
            try:
                fairy, conn = self.idle.pop()
            except IndexError:
                return None
            if not conn.closed:
                return fairy, conn
            self._close(fairy)

    def _make(self, engine: Engine) -> tuple[Any, Any]:
        fairy = engine.raw_connection()
        conn: Any = fairy.driver_connection  # read before detaching: the fairy forgets its record then
        fairy.detach()
        conn.autocommit = True
        with self.lock:
            self.all[id(fairy)] = fairy
        try:
            _setup(conn)
        except BaseException:
            self._close(fairy)
            raise
        return fairy, conn

    def give(self, fairy: Any, conn: Any) -> None:
        """Take back a lent connection whose statement ended well."""
        if self.pid != os.getpid() or self.closing or conn.closed:
            self._close(fairy)
            return
        self.idle.append((fairy, conn))
        if self.waiting:
            with self.lock:
                self.freed.notify()

    def discard(self, fairy: Any) -> None:
        """Close a lent connection (it failed, or its statement was interrupted)."""
        self._close(fairy)

    def _close(self, fairy: Any) -> None:
        """Close ``fairy`` (one fewer open: a waiting statement may open another); closing may fail too: it is
        gone either way."""
        with self.lock:
            if self.all.pop(id(fairy), None) is not None:
                self.open -= 1
                self.freed.notify()
        if self.pid == os.getpid():
            with contextlib.suppress(Exception):
                fairy.close()  # detached: closes the driver's connection too

    def close(self) -> None:
        """Close this process's idle connections; those lent out are closed when given back."""
        self.closing = True
        if self.pid != os.getpid():
            self._forked()
            return
        idle, self.idle = self.idle, []
        for fairy, _conn in idle:
            self._close(fairy)

    def _forked(self) -> None:
        """In a forked child: forget the parent's connections (kept referenced: collecting one would end
        the parent's session on the socket they share) and start empty, with a lock of its own (the
        parent's may have been held by a thread that does not exist here)."""
        if self.pid == os.getpid():
            return
        _FORKED.extend(self.all.values())
        self.lock = threading.Lock()
        self.freed = threading.Condition(self.lock)
        self.all, self.idle, self.open, self.waiting, self.pid = {}, [], 0, 0, os.getpid()


_BY_ENGINE: weakref.WeakKeyDictionary[Engine, _Hot] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
# A forked child's copies of its parent's connections: kept referenced, so that collecting them never
# ends the parent's sessions on the sockets they share.
_FORKED: list[Any] = []


def _hot(engine: Engine) -> _Hot:
    hot = _BY_ENGINE.get(engine)
    if hot is None:
        with _LOCK:
            hot = _BY_ENGINE.get(engine)
            if hot is None:
                hot = _BY_ENGINE[engine] = _Hot()
                # An engine dropped without Ledger.close (or still there at exit) closes them too.
                weakref.finalize(engine, hot.close)
    return hot


def run(engine: Engine, use: Callable[[Any], T], failed: tuple[type[BaseException], ...]) -> T:
    """``use(psycopg connection)`` on one of ``engine``'s hot connections, in autocommit, lent to this call
    alone. A connection whose use raised one of ``failed`` (the driver's errors) and is broken or left
    inside a transaction is closed before the error propagates. SQLAlchemy's errors from making a
    connection propagate as they are."""
    hot = _hot(engine)
    fairy, conn = hot.take(engine)
    try:
        result = use(conn)
    except failed:
        if conn.closed or conn.info.transaction_status != 0:
            hot.discard(fairy)  # broken, or left inside a transaction: never lent to the next write
        else:
            hot.give(fairy, conn)
        raise
    except BaseException:
        hot.discard(fairy)  # interrupted mid-statement: its state is unknown
        raise
    hot.give(fairy, conn)
    return result


def warm(engine: Engine, count: int = MAX_OPEN) -> int:
    """Open ``count`` (at most ``MAX_OPEN``) hot connections now and leave them idle (a worker's start: its
    first tasks then find them made and set up, instead of each opening one while traffic waits); how many
    were opened. SQLAlchemy's and psycopg's errors propagate."""
    hot = _hot(engine)
    made: list[tuple[Any, Any]] = []
    try:
        for _ in range(min(count, MAX_OPEN)):
            made.append(hot.take(engine))
    finally:
        for fairy, conn in made:
            hot.give(fairy, conn)
    return len(made)


def close(engine: Engine) -> None:
    """Close ``engine``'s hot connections (made by :func:`run`): the idle ones now, those lent out when
    their statement ends."""
    hot = _BY_ENGINE.pop(engine, None)
    if hot is not None:
        hot.close()
