"""Recording the ruleset versions that go live, from the workers that load them.

A :class:`LiveRecorder` listens to a ``worker.reload.RuleHolder`` (the current rules, or a rollout's
candidate): when the holder's book has a ruleset text this process has not recorded yet, it appends it to
the ledger's history (``worker.ledger.rule_history``), which skips it when the chain's latest row already
has it (another worker, or ``vipflow rules rollback``, came first). A database failure is logged by the
holder and tried again at its next check, every ``rules.reload_interval_s``; the rules stay in force.

Who: ``worker@<host>``, the process that put it live; the note names the rule file's owner (``os:<user>``)
and its modification time, the best a file edit tells of who made it. An edit made with
``vipflow rules rollback`` is recorded with the CLI's authenticated actor instead.
"""

from __future__ import annotations

import logging
import os
import pwd
import socket
import threading
import time
from decimal import Decimal
from pathlib import Path

from rules import RuleBook
from rules.testing import test_file_for
from worker.ledger.rule_history import CANDIDATE, LiveVersion, RuleHistory

log = logging.getLogger("vipflow.rules.history")


def worker_actor() -> str:
    """``worker@<host>``: the actor of a version a worker put live."""
    return f"worker@{socket.gethostname()}"[:200]


def _owner_note(file: Path) -> str | None:
    try:
        st = file.stat()
    except OSError:
        return None
    try:
        owner = f"os:{pwd.getpwuid(st.st_uid).pw_name}"
    except KeyError:
        owner = f"os:uid{st.st_uid}"
    changed = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))
    return f"file owned by {owner}, modified {changed}"


def tests_text(rule_file: str | Path) -> str | None:
    """The test file beside ``rule_file``, or None when there is none (or it cannot be read)."""
    try:
        return test_file_for(Path(rule_file)).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


class LiveRecorder:
    """A ``RuleHolder`` listener recording its book's versions in the history (role ``current`` or
    ``candidate``; a candidate with share 0 decides nothing and is not recorded)."""

    def __init__(self, history: RuleHistory, role: str, *, share: Decimal | None = None, actor: str | None = None):
        self.history = history
        self.role = role
        self.share = share
        self.actor = actor or worker_actor()
        self._recorded: dict[str, str] = {}  # ruleset name -> the content hash this process saw recorded
        self._lock = threading.Lock()

    def __call__(self, book: RuleBook, how: str) -> None:
        """Record each ruleset of ``book`` not recorded yet by this process; LedgerUnavailable propagates."""
        if self.role == CANDIDATE and not self.share:
            return
        with self._lock:
            for name, rs in sorted(book.rulesets.items()):
                if self._recorded.get(name) == rs.content_hash:
                    continue
                said = how if how != "kept" else ("reloaded" if name in self._recorded else "loaded")
                live = LiveVersion(name=name, version=rs.version, content_hash=rs.content_hash, text=rs.text,
                                   source=str(Path(rs.file).absolute()), tests_text=tests_text(rs.file),
                                   role=self.role, share=self.share if self.role == CANDIDATE else None,
                                   note=_owner_note(Path(rs.file)))
                row = self.history.record(live, actor=self.actor, how=said)
                self._recorded[name] = rs.content_hash
                if row is not None:
                    log.info("ruleset version went live", extra={
                        "ruleset": name, "version": rs.version, "content_hash": rs.content_hash,
                        "role": self.role, "how": said, "pid": os.getpid()})
