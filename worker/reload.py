"""Rule hot reload: the current RuleBook, swapped atomically when the rule files change.

Every ``rules.reload_interval_s`` seconds (a daemon thread) and on SIGHUP the
rule files are hashed; on a change the new files must load and pass their own
tests (``verify_rulebook``) before they replace the book in force. A refused
version keeps the previous book and says why in the log. Tasks read the holder
once at their start, so a decision never mixes two versions.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rules import RuleBook, RuleError, verify_rulebook
from rules.book import rule_files
from rules.testing import test_file_for

log = logging.getLogger("vipflow.reload")


def files_hash(path: str | Path) -> str:
    """A hash of the rule files and their test files at ``path`` (names and contents)."""
    digest = hashlib.sha256()
    for file in rule_files(path):
        for part in (file, test_file_for(file)):
            digest.update(str(part).encode() + b"\0")
            try:
                digest.update(part.read_bytes())
            except OSError:
                digest.update(b"<missing>")
            digest.update(b"\0")
    return digest.hexdigest()


# Told of the book in force: "loaded" (at start), "reloaded" (a new version took over) or "kept" (a check
# found nothing new): ``worker.rule_live.LiveRecorder`` records the versions that went live.
BookListener = Callable[[RuleBook, str], None]


class RuleHolder:
    """Holds the RuleBook in force; ``check()`` reloads it when the files changed.

    ``verify`` is the gate a version passes before it is used (``verify_rulebook``: ``rules check`` and the
    tests beside the files; a rollout's candidate uses ``verify_tested_rulebook``). ``on_book`` is told of
    the book after every check (see ``BookListener``); its failures are logged, never raised.

    ``accept`` is a further gate a new book must pass (raise RuleError to refuse it), e.g. that the lists it
    names exist (``worker.lists.holder.ListHolder.require``); also applied to the first book.
    """

    def __init__(self, path: str | Path, book: RuleBook | None = None, *,
                 verify: Callable[[Path], RuleBook] = verify_rulebook, on_book: BookListener | None = None,
                 accept: Callable[[RuleBook], None] | None = None):
        self.path = Path(path)
        self._verify = verify
        self._on_book = on_book
        self._lock = threading.Lock()
        self._accept = accept
        self._files_hash = files_hash(self.path)
        self._book = book if book is not None else verify(self.path)
        if accept is not None:
            accept(self._book)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_accepted("loaded")
        self._tell("loaded")

    def listen(self, on_book: BookListener) -> None:
        """Tell ``on_book`` of the book in force now ("loaded") and after every check from now on."""
        self._on_book = on_book
        self._tell("loaded")

    def _tell(self, how: str) -> None:
        if self._on_book is None:
            return
        try:
            self._on_book(self._book, how)
        except Exception:
            log.exception("could not record the rules in force; trying again at the next check",
                          extra={"rules_path": str(self.path)})

    def current(self) -> RuleBook:
        """The rule book in force now (read it once per task)."""
        return self._book

    def check(self) -> bool:
        """Reload if the rule files changed and the new ones pass; True when a new book took over. The
        listener is told either way (after the reload lock is released)."""
        changed = self._check()
        self._tell("reloaded" if changed else "kept")
        return changed

    def _check(self) -> bool:
        with self._lock:
            seen = files_hash(self.path)
            if seen == self._files_hash:
                return False
            self._files_hash = seen  # refuse a bad version once, not on every tick
            try:
                book = self._verify(self.path)
                if self._accept is not None:
                    self._accept(book)
            except (RuleError, OSError) as exc:
                log.error("rule files refused; keeping the previous version", extra={
                    "rules_path": str(self.path), "problem": str(exc),
                    "kept_hash": self._book.content_hash})
                return False
            if book.content_hash == self._book.content_hash:
                return False
            self._book = book  # one reference assignment: atomic for the tasks reading it
            self._log_accepted("reloaded")
            return True

    def _log_accepted(self, how: str) -> None:
        versions = {name: rs.version for name, rs in self._book.rulesets.items()}
        log.info(f"rules {how}", extra={"rules_path": str(self.path), "versions": versions,
                                        "content_hash": self._book.content_hash})

    def start(self, interval_s: float, *, sighup: bool = True) -> None:
        """Check every ``interval_s`` seconds in a daemon thread, and on SIGHUP (main thread only)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, args=(interval_s,),
                                            name="vipflow-rules-reload", daemon=True)
            self._thread.start()
        if sighup and threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_sighup)

    def stop(self) -> None:
        """Stop the background checks."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _on_sighup(self, signum: int, frame: Any) -> None:
        # Never reload inside the signal handler: it may interrupt a check holding the lock.
        threading.Thread(target=self._safe_check, name="vipflow-rules-sighup", daemon=True).start()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self._safe_check()

    def _safe_check(self) -> None:
        try:
            self.check()
        except Exception:
            log.exception("rule reload check failed; keeping the previous version")
