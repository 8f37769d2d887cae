"""The history of ruleset versions that went live: who put which text live, when, and how.

"Went live" means a process that decides real traffic accepted the version: a worker loading it at start
or on a hot reload (after ``rules check`` and its own tests passed, ``worker.reload``), as the current rules
or as the candidate of a percentage rollout with a share above 0; or ``vipflow rules rollback`` writing it
into ``rules.path`` (recorded with the CLI's actor; the workers then load it within
``rules.reload_interval_s`` and find it already recorded). Each (ruleset, role) is one chain: a row is added
only when its text differs from the chain's latest, so a fleet of workers loading the same files records it
once, by whichever came first. The text itself is kept once in ``rulesets`` (by hash); the test file that
went with it is kept on the row, so a rollback restores both.

Rows are never updated or deleted (a trigger refuses it on PostgreSQL).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from worker.ledger import commit
from worker.ledger import tables as t

CURRENT = "current"
CANDIDATE = "candidate"
ROLES = (CURRENT, CANDIDATE)


@dataclass(frozen=True)
class LiveVersion:
    """One ruleset version going live (what a recorder writes)."""

    name: str  # deposit | withdraw
    version: int
    content_hash: str  # sha256 of the rule file's bytes
    text: str  # the rule file as written
    source: str  # the rule file's path
    tests_text: str | None = None  # the test file beside it, None when there is none
    role: str = CURRENT
    share: Decimal | None = None  # a candidate's share, percent
    note: str | None = None


@dataclass(frozen=True)
class HistoryRow:
    """One recorded version, as readers see it (``at``: epoch seconds)."""

    id: int
    name: str
    role: str
    version: int
    content_hash: str
    at: float
    actor: str
    how: str
    share: Decimal | None
    source: str
    tests_text: str | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the test text)."""
        return {"id": self.id, "ruleset": self.name, "role": self.role, "version": self.version,
                "content_hash": self.content_hash, "at": self.at, "actor": self.actor, "how": self.how,
                "share": None if self.share is None else f"{self.share:.2f}", "source": self.source,
                "has_tests": self.tests_text is not None, "note": self.note}


class RuleHistory:
    """Reads and appends the ``ruleset_history`` chains on the ledger's engine."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def _run(self, op: Any, doing: str) -> Any:
        try:
            return op()
        except SQLAlchemyError as exc:
            raise commit.unavailable(doing, exc) from None

    def record(self, live: LiveVersion, *, actor: str, how: str, at: float | None = None) -> HistoryRow | None:
        """Append ``live`` to its chain unless the chain's latest row already has its text; the new row, or
        None when it was there. The text goes to ``rulesets`` too. LedgerUnavailable when the database fails."""
        def op() -> HistoryRow | None:
            for _ in range(5):  # another recorder took the same place in the chain: read again
                try:
                    return self._append(live, actor, how, time.time() if at is None else at)
                except IntegrityError:
                    continue
            raise commit.unavailable("record a ruleset version", RuntimeError("the history chain kept moving"))
        result: HistoryRow | None = self._run(op, "record a ruleset version in the history")
        return result

    def _append(self, live: LiveVersion, actor: str, how: str, at: float) -> HistoryRow | None:
        h = t.ruleset_history.c
        with self.engine.begin() as conn:
            latest = conn.execute(select(h.id, h.content_hash).where(h.name == live.name, h.role == live.role)
                                  .order_by(h.id.desc()).limit(1)).first()
            if latest is not None and latest.content_hash == live.content_hash:
                return None
            commit.insert_ignore(conn, t.rulesets, [{
                "content_hash": live.content_hash, "name": live.name, "version": live.version,
                "file": live.source, "text": live.text, "first_used_at": at}], "content_hash")
            row = {"name": live.name, "role": live.role, "follows": latest.id if latest is not None else 0,
                   "version": live.version, "content_hash": live.content_hash, "at": at, "actor": actor[:200],
                   "how": how, "share": live.share, "source": live.source, "tests_text": live.tests_text,
                   "note": live.note}
            new_id = conn.execute(insert(t.ruleset_history).values(**row).returning(h.id)).scalar_one()
        return HistoryRow(id=int(new_id), name=live.name, role=live.role, version=live.version,
                          content_hash=live.content_hash, at=at, actor=actor[:200], how=how, share=live.share,
                          source=live.source, tests_text=live.tests_text, note=live.note)

    def rows(self, name: str | None = None, *, role: str | None = None, limit: int | None = None) -> list[HistoryRow]:
        """The recorded versions, oldest first (the last ``limit`` of them), of one ruleset or all."""
        h = t.ruleset_history.c

        def op() -> list[HistoryRow]:
            q = select(t.ruleset_history)
            if name is not None:
                q = q.where(h.name == name)
            if role is not None:
                q = q.where(h.role == role)
            q = q.order_by(h.id.desc())
            if limit is not None:
                q = q.limit(limit)
            with self.engine.connect() as conn:
                found = [_row(r) for r in conn.execute(q)]
            return found[::-1]
        result: list[HistoryRow] = self._run(op, "read the ruleset history")
        return result

    def texts(self, name: str, ref: str) -> list[dict[str, Any]]:
        """The stored rule texts (``rulesets`` rows: content_hash, name, version, file, text, first_used_at) of
        ruleset ``name`` that ``ref`` names (a version number or a hash prefix): every version that went live
        or decided anything, newest first."""
        r = t.rulesets.c
        cond = r.version == int(ref) if ref.isdigit() else r.content_hash.startswith(ref.lower(), autoescape=True)

        def op() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(
                    select(t.rulesets).where(r.name == name, cond).order_by(r.first_used_at.desc()))]
        result: list[dict[str, Any]] = self._run(op, "read the stored rule texts")
        return result

    def highest_version(self, name: str) -> int:
        """The highest ``version:`` ruleset ``name`` ever had here (history or stored texts); -1 when none."""
        def op() -> int:
            with self.engine.connect() as conn:
                a = conn.execute(select(t.ruleset_history.c.version).where(t.ruleset_history.c.name == name)
                                 .order_by(t.ruleset_history.c.version.desc()).limit(1)).scalar()
                b = conn.execute(select(t.rulesets.c.version).where(t.rulesets.c.name == name)
                                 .order_by(t.rulesets.c.version.desc()).limit(1)).scalar()
            return max(-1 if a is None else int(a), -1 if b is None else int(b))
        result: int = self._run(op, "read the ruleset history")
        return result

    def tests_for(self, content_hash: str) -> str | None:
        """The test file recorded with the newest row of ``content_hash``, or None."""
        h = t.ruleset_history.c

        def op() -> str | None:
            with self.engine.connect() as conn:
                value = conn.execute(select(h.tests_text).where(
                    h.content_hash == content_hash, h.tests_text.is_not(None)).order_by(h.id.desc())
                    .limit(1)).scalar()
            return None if value is None else str(value)
        result: str | None = self._run(op, "read the ruleset history")
        return result


def _row(r: Any) -> HistoryRow:
    m = r._mapping
    share = m["share"]
    return HistoryRow(id=int(m["id"]), name=m["name"], role=m["role"], version=int(m["version"]),
                      content_hash=m["content_hash"], at=float(m["at"]), actor=m["actor"], how=m["how"],
                      share=None if share is None else Decimal(str(share)), source=m["source"],
                      tests_text=m["tests_text"], note=m["note"])
