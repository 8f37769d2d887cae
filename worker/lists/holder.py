"""The lists a running worker decides with: read from the ledger, refreshed without a restart.

Every ``lists.reload_interval_s`` seconds (a daemon thread) the holder asks the
ledger for every list's version (one small query) and reads again only the lists
whose version moved; the new set replaces the old in one reference assignment, so a
task that read :meth:`ListHolder.current` once decides on one consistent set. A
ledger that does not answer keeps the lists in force (logged), never an empty set.

The rules' hot reload asks :meth:`ListHolder.require` before a new rule book takes
over: a book naming a list the ledger does not have (or one of another kind than
its fact) is refused like a rule file that fails its tests.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from rules import RuleBook
from rules.errors import RuleFilesInvalid
from rules.lists import NamedList, check_lists
from worker.errors import StoreError
from worker.lists.store import ListStore
from worker.metrics import LIST_ENTRIES, LIST_VERSION

log = logging.getLogger("vipflow.lists")


_SHARED: dict[tuple[str, int], ListHolder] = {}
_SHARED_LOCK = threading.Lock()


def shared_holder(url: str, store: ListStore, interval_s: float) -> ListHolder:
    """The process's one holder for the ledger at ``url`` (started): each keeps every list in memory, so the
    worker's tasks and its expiry share one rather than hold two copies."""
    with _SHARED_LOCK:
        key = (url, store.max_entries)
        holder = _SHARED.get(key)
        if holder is None:
            holder = _SHARED[key] = ListHolder(store)
            holder.start(interval_s)
        return holder


class ListHolder:
    """The lists in force (name -> NamedList); ``check()`` reads again those whose version changed."""

    def __init__(self, store: ListStore):
        self.store = store
        self._lock = threading.Lock()
        self._lists: Mapping[str, NamedList] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._interval_s = 0.0
        self._fork_hook = False
        self.check()  # the first read: a ledger that fails here stops the start (StoreError)

    def current(self) -> Mapping[str, NamedList]:
        """The lists in force now (read once per task)."""
        return self._lists

    def check(self) -> bool:
        """Read the lists whose version changed (and drop deleted ones); True when anything changed."""
        with self._lock:
            versions = self.store.versions()
            held = self._lists
            changed = {name for name, (kind, version) in versions.items()
                       if name not in held or held[name].version != version or held[name].kind != kind}
            if not changed and set(held) == set(versions):
                return False
            fresh = {name: lst for name, lst in held.items() if name in versions and name not in changed}
            for name in sorted(changed):
                fresh[name] = self.store.load(name)
            self._lists = fresh  # one reference assignment: atomic for the tasks reading it
        for name in sorted(changed):
            found = fresh[name]
            LIST_VERSION.labels(name).set(found.version)
            LIST_ENTRIES.labels(name).set(found.size)
            log.info("list loaded", extra={"list": name, "kind": found.kind, "version": found.version,
                                           "entries": found.size})
        return True

    def require(self, book: RuleBook) -> None:
        """RuleFilesInvalid (file:line, rule) when ``book`` names a list the ledger lacks or of another kind
        than its fact takes; the lists are read again first, so one created a moment ago counts."""
        try:
            self.check()
        except StoreError as exc:
            log.warning("lists not refreshed before a rule reload", extra={"problem": str(exc)})
        kinds = {name: lst.kind for name, lst in self._lists.items()}
        problems = [p for rs in book.rulesets.values() for p in check_lists(rs, kinds)]
        if problems:
            raise RuleFilesInvalid(problems)

    def start(self, interval_s: float) -> None:
        """Check every ``interval_s`` seconds in a daemon thread (started again in a forked child, which
        inherits the holder but not the thread: a prefork pool's replacement children)."""
        if self._thread is None:
            self._interval_s = interval_s
            self._thread = threading.Thread(target=self._loop, args=(interval_s,), name="vipflow-lists-reload",
                                            daemon=True)
            self._thread.start()
            if not self._fork_hook:
                self._fork_hook = True
                os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        if self._thread is not None and not self._stop.is_set():
            self._lock = threading.Lock()  # a lock held by another thread at the fork stays held in the child
            self._thread = None
            self.start(self._interval_s)

    def stop(self) -> None:
        """Stop the background checks."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.check()
            except StoreError as exc:  # the ledger down: one line per try, no traceback
                log.warning("lists not refreshed; keeping the lists in force", extra={"problem": str(exc)})
            except Exception:
                log.exception("list reload check failed; keeping the lists in force")
