"""Lists as a decision saw them: for a backtest that holds the lists still (``replay --dry-run
--lists-as-decided``) and so shows what a rule change alone does.

Each decision records the version of every list its ruleset named (``decision.lists``). A version is
rebuilt from the ledger's append-only history once and kept while it is among the most recently used
(``keep`` per run), so a backtest over a million transactions decided with a few versions reads each
version once. A list the recorded decision did not name (decided before the rules used it) is taken
as it is now, and counted by the caller.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from rules.lists import NamedList
from worker.lists.store import ListStore


class ListsAsDecided:
    """The lists at the versions a recorded decision names, over the lists as they are now."""

    def __init__(self, store: ListStore, current: Mapping[str, NamedList], keep: int = 16):
        self.store = store
        self.current = dict(current)
        self.keep = keep
        self._cache: OrderedDict[tuple[str, int], NamedList] = OrderedDict()

    def at(self, recorded: Mapping[str, int] | None) -> dict[str, NamedList]:
        """The current lists with each one ``recorded`` names replaced by that version (rebuilt once)."""
        out = dict(self.current)
        for name, version in (recorded or {}).items():
            now = self.current.get(name)
            if now is None:
                continue  # a list the rules no longer name
            out[name] = now if now.version == version else self._version(name, int(version))
        return out

    def _version(self, name: str, version: int) -> NamedList:
        key = (name, version)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self.store.load_version(name, version)
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return found
