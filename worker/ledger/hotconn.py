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
end, or the interpreter's); a thread's end closes its own. After a fork the child never uses its
parent's: it makes its own (and leaves the parent's sockets alone).
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


class _Slot:
    """One thread's connection. It lives in the thread's ``threading.local``, which Python clears when
    the thread ends: the slot's finalizer then closes the connection (threads of a pool that shrinks,
    such as the web service's, leave none open)."""

    __slots__ = ("__weakref__", "conn", "fairy", "pid")

    def __init__(self, fairy: Any, conn: Any):
        self.fairy, self.conn, self.pid = fairy, conn, os.getpid()


class _Hot:
    """An engine's detached connections, one per thread."""

    def __init__(self) -> None:  # never holds the engine: the registry's weak key would never go
        self.local = threading.local()
        self.lock = threading.Lock()
        self.all: dict[int, tuple[int, Any]] = {}  # id(slot) -> (pid, fairy): every live connection

    def get(self, engine: Engine) -> tuple[Any, Any]:
        """This thread's (pool fairy, detached; its psycopg connection, in autocommit)."""
        slot: _Slot | None = getattr(self.local, "slot", None)
        if slot is not None and slot.pid == os.getpid() and not slot.conn.closed:
            return slot.fairy, slot.conn
        if slot is not None and slot.pid != os.getpid():
            _FORKED.append(slot.fairy)  # the parent's, in a forked child: never used, never closed here
        fairy = engine.raw_connection()
        conn: Any = fairy.driver_connection  # read before detaching: the fairy forgets its record then
        fairy.detach()
        conn.autocommit = True
        slot = self.local.slot = _Slot(fairy, conn)
        with self.lock:
            self.all[id(slot)] = (slot.pid, fairy)
        weakref.finalize(slot, self._ended, id(slot))
        return fairy, conn

    def _ended(self, key: int) -> None:
        """A slot went (its thread ended, or it was replaced): close its connection, in its own process."""
        with self.lock:
            pid, fairy = self.all.pop(key, (0, None))
        if fairy is not None and pid == os.getpid():
            with contextlib.suppress(Exception):  # it is going either way
                fairy.close()

    def drop(self, fairy: Any) -> None:
        """Close ``fairy`` (it failed); the thread's next :meth:`get` makes a new one."""
        slot = getattr(self.local, "slot", None)
        if slot is not None and slot.fairy is fairy:
            self.local.slot = None
        with self.lock:
            self.all = {k: v for k, v in self.all.items() if v[1] is not fairy}
        # Closing a broken connection may fail too; it is gone either way.
        with contextlib.suppress(Exception):
            fairy.invalidate()

    def close(self) -> None:
        """Close this process's connections (a forked child's copies of its parent's are only forgotten)."""
        with self.lock:
            entries, self.all = list(self.all.values()), {}
        for pid, fairy in entries:
            if pid != os.getpid():
                _FORKED.append(fairy)
                continue
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
