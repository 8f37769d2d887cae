"""The audit of every human act: who, when, what, why; for the workspace's audit page and its CSV.

Two append-only sources in the ledger, merged newest first: the ``human`` events of transactions
(claims, reveals, approvals and rejections from the workspace and the CLI, first approvals of four
eyes) and ``workspace_events`` (users added, disabled, reset; logins, refused logins, logouts).
Free text (a reason) may name a patron: it is masked here, before any page or file sees it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from worker.errors import InputError
from worker.ledger import tables as t
from worker.ledger.commit import unavailable
from worker.masking import mask_mapping, mask_text

MAX_ROWS = 100_000  # a CSV export's bound


@dataclass(frozen=True)
class AuditFilter:
    """Filters: the actor (exact), the act (``review_approve``, ``claim``, ``login`` ...), a transaction
    id, and a time range in epoch seconds."""

    actor: str | None = None
    action: str | None = None
    transaction_id: str | None = None
    since: float | None = None
    until: float | None = None

    @classmethod
    def parse(cls, params: dict[str, str]) -> AuditFilter:
        """From query parameters (``since``/``until`` as YYYY-MM-DD, UTC); InputError naming a bad one."""
        def day(name: str, end: bool) -> float | None:
            text = (params.get(name) or "").strip()
            if not text:
                return None
            try:
                when = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                raise InputError(f"{name}: {text!r} is not a date (YYYY-MM-DD)") from None
            return when.timestamp() + (86_400 if end else 0)

        def word(name: str) -> str | None:
            return (params.get(name) or "").strip()[:200] or None

        return cls(word("actor"), word("action"), word("tx"), day("since", False), day("until", True))


@dataclass(frozen=True)
class AuditRow:
    """One human act. ``at`` epoch seconds; ``why`` masked; ``detail`` masked extra data."""

    at: float
    actor: str
    action: str
    status: str | None
    transaction_id: str | None
    subject: str | None
    why: str | None
    detail: dict[str, Any]

    @property
    def when(self) -> str:
        """``at`` as ISO 8601 UTC, to the second."""
        return datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds")


_SKIP = {"actor", "reason", "verdict", "stated_name"}


def _row_of_event(r: Any) -> AuditRow:
    data = dict(r.data or {})
    why = data.get("reason")
    detail = {k: v for k, v in data.items() if k not in _SKIP and v is not None}
    if data.get("stated_name"):
        detail["stated_name"] = data["stated_name"]
    return AuditRow(r.at, r.actor or "unknown", r.name or r.kind, r.status, r.transaction_id, None,
                    mask_text(str(why)) if why else None, mask_mapping(detail))


def _row_of_workspace(r: Any) -> AuditRow:
    return AuditRow(r.at, r.actor, r.action, None, None, r.subject, None, mask_mapping(dict(r.data or {})))


def audit(engine: Engine, filters: AuditFilter, *, limit: int = 500) -> list[AuditRow]:
    """Human acts matching ``filters``, newest first, at most ``limit``. LedgerUnavailable on a database
    failure."""
    e, w = t.events.c, t.workspace_events.c
    q1 = select(e.at, e.actor, e.name, e.kind, e.status, e.transaction_id, e.data).where(e.kind == "human")
    q2 = select(w.at, w.actor, w.action, w.subject, w.data)
    if filters.actor:
        q1, q2 = q1.where(e.actor == filters.actor), q2.where(w.actor == filters.actor)
    if filters.action:
        q1, q2 = q1.where(e.name == filters.action), q2.where(w.action == filters.action)
    if filters.since is not None:
        q1, q2 = q1.where(e.at >= filters.since), q2.where(w.at >= filters.since)
    if filters.until is not None:
        q1, q2 = q1.where(e.at < filters.until), q2.where(w.at < filters.until)
    if filters.transaction_id:
        q1 = q1.where(e.transaction_id == filters.transaction_id)
    try:
        with engine.connect() as conn:
            rows = [_row_of_event(r) for r in conn.execute(q1.order_by(e.at.desc()).limit(limit))]
            if not filters.transaction_id:
                rows += [_row_of_workspace(r) for r in conn.execute(q2.order_by(w.at.desc()).limit(limit))]
    except SQLAlchemyError as exc:
        raise unavailable("read the audit", exc) from None
    return sorted(rows, key=lambda row: row.at, reverse=True)[:limit]


def _cell(value: str) -> str:
    # A spreadsheet runs a cell starting with = + - @ (or a tab/CR) as a formula: keep it text (OWASP).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


CSV_COLUMNS = ("when_utc", "actor", "action", "status", "transaction_id", "subject", "why", "detail")


def to_csv(rows: list[AuditRow]) -> Iterator[str]:
    """The rows as CSV text, a header first, in chunks (already masked)."""
    import json

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        cells = [row.when, row.actor, row.action, row.status or "", row.transaction_id or "", row.subject or "",
                 row.why or "", json.dumps(row.detail, sort_keys=True, default=str) if row.detail else ""]
        writer.writerow([_cell(c) for c in cells])
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
