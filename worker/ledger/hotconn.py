"""One PostgreSQL connection per worker thread for the hot path's one-statement writes and reads.

Each write of a transaction on PostgreSQL is one statement in autocommit (``pgwrite``). Taking
a connection from SQLAlchemy's pool for it and giving it back, and switching the driver's
autocommit on and off around it, cost about a quarter of the write's CPU in the worker
(profiled under the end-to-end bench). A worker thread writes one transaction at a time, so
it keeps a connection of its own instead: taken once from the engine's pool and detached
from it (``_ConnectionFairy.detach``: the engine's own connect settings and events apply),
in autocommit for good. A connection that failed is closed and the thread's next call makes
a new one (the task is retried meanwhile, as with a pooled connection).

:func:`close` closes every such connection of an engine (``Ledger.close``; so does the engine's
end, or the interpreter's). After a fork the child never uses its parent's: it makes its own
(and leaves the parent's sockets alone).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine

T = TypeVar("T")


class _Hot:
    """An engine's detached connections, one per thread."""

    def __init__(self) -> None:  # never holds the engine: the registry's weak key would never go
        self.local = threading.local()
        self.lock = threading.Lock()
        self.all: list[tuple[int, Any]] = []  # (pid, fairy) of every connection made, to close them

    def get(self, engine: Engine) -> tuple[Any, Any]:
        """This thread's (pool fairy, detached; its psycopg connection, in autocommit)."""
        fairy = getattr(self.local, "fairy", None)
        if fairy is not None and self.local.pid == os.getpid() and not self.local.conn.closed:
            return fairy, self.local.conn
        if fairy is not None and self.local.pid != os.getpid():
            _FORKED.append(fairy)  # the parent's, in a forked child: never used, never closed here
        fairy = engine.raw_connection()
        conn: Any = fairy.driver_connection  # read before detaching: the fairy forgets its record then
        fairy.detach()
        conn.autocommit = True
        self.local.fairy, self.local.conn, self.local.pid = fairy, conn, os.getpid()
        with self.lock:
            self.all.append((os.getpid(), fairy))
        return fairy, conn

    def drop(self, fairy: Any) -> None:
        """Close ``fairy`` (it failed); the thread's next :meth:`get` makes a new one."""
        if getattr(self.local, "fairy", None) is fairy:
            self.local.fairy = None
        with self.lock:
            self.all = [(pid, f) for pid, f in self.all if f is not fairy]
        # Closing a broken connection may fail too; it is gone either way.
        with contextlib.suppress(Exception):
            fairy.invalidate()

    def close(self) -> None:
        """Close this process's connections (a forked child's copies of its parent's are only forgotten)."""
        with self.lock:
            mine = [f for pid, f in self.all if pid == os.getpid()]
            _FORKED.extend(f for pid, f in self.all if pid != os.getpid())
            self.all = []
        for fairy in mine:
            with contextlib.suppress(Exception):  # closing at shutdown: nothing more to do
                fairy.close()


_BY_ENGINE: weakref.WeakKeyDictionary[Engine, _Hot] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
# A forked child's copies of its parent's connections: kept referenced, so that collecting them never
# ends the parent's sessions on the sockets they share.
_FORKED: list[Any] = []


def run(engine: Engine, use: Callable[[Any], T], failed: tuple[type[BaseException], ...]) -> T:
    """``use(psycopg connection)`` on this thread's connection to ``engine``, in autocommit; a connection
    whose use raised one of ``failed`` (the driver's errors) is closed before the error propagates.
    SQLAlchemy's errors from making a connection propagate as they are."""
    hot = _BY_ENGINE.get(engine)
    if hot is None:
        with _LOCK:
            hot = _BY_ENGINE.get(engine)
            if hot is None:
                hot = _BY_ENGINE[engine] = _Hot()
                # An engine dropped without Ledger.close (or still there at exit) closes them too.
                weakref.finalize(engine, hot.close)
    fairy, conn = hot.get(engine)
    try:
        return use(conn)
    except failed:
        if conn.closed or conn.info.transaction_status != 0:
            hot.drop(fairy)  # broken, or left inside a transaction: never given to the next write
        raise


def close(engine: Engine) -> None:
    """Close every thread's connection to ``engine`` (made by :func:`run`)."""
    hot = _BY_ENGINE.pop(engine, None)
    if hot is not None:
        hot.close()
