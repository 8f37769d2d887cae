"""A live table of decisions as workers record them in the ledger (used by ``vipflow run``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.live import Live
from rich.table import Table

from producers.commands.output import console as make_console
from rules.money import format_amount
from worker.ledger.states import State, is_settled

_STYLE = {State.APPROVED: "green", State.REVIEW: "yellow", State.REJECTED: "red", State.FAILED: "red"}
_BATCH = 1000  # transactions read per poll
_COMMIT_LAG_S = 5.0  # how far behind the newest settled transaction each poll starts again


def _table(rows: list[tuple[str, ...]], summary: str) -> Table:
    table = Table(title="vipflow decisions", caption=summary, expand=False)
    for name in ("transaction", "type", "amount", "outcome", "state", "rules"):
        table.add_column(name, justify="right" if name == "amount" else "left", overflow="fold")
    for row in rows[-25:]:
        table.add_row(*row[:4], f"[{_STYLE.get(State(row[4]), 'white')}]{row[4]}[/]", row[5])
    return table


def follow_decisions(settings: Any, *, since: float, expected: int, children_check: Callable[[], None],
                     exit_after: float | None) -> None:
    """Poll the ledger for transactions created after ``since`` (epoch seconds) and redraw the table
    until interrupted (or ``exit_after`` seconds after ``expected`` are settled)."""
    from worker.errors import LedgerUnavailable
    from worker.ledger import Ledger

    ledger = Ledger.open(settings.database.url)
    shown: dict[str, tuple[str, ...]] = {}
    order: dict[str, float] = {}
    cursor = since - 1  # the oldest creation time that may still change; everything before is shown
    done_at: float | None = None
    console = make_console(highlight=True)  # a reader that leaves ends it as every command ends
    with Live(_table([], "waiting for notifications ..."), console=console, refresh_per_second=4) as live:
        while True:
            children_check()
            try:
                records = ledger.created_since(cursor, _BATCH)
            except LedgerUnavailable:
                records = []  # the worker may be migrating or busy; the next poll tries again
            unsettled: float | None = None
            for record in records:
                if not is_settled(record.state):
                    unsettled = record.created_at if unsettled is None else min(unsettled, record.created_at)
                    continue
                decision = record.decision or {}
                rules = ", ".join(m["id"] for m in decision.get("matched", [])) or "(default)"
                tx_id = record.transaction_id
                shown[tx_id] = (tx_id, record.transaction_type or "?", format_amount(record.amount),
                                str(decision.get("outcome", "-")), str(record.state), rules)
                order.setdefault(tx_id, record.updated_at)
            if len(records) >= _BATCH:  # a full batch: page on past all of it, the rest next time
                cursor = records[-1].created_at
            elif records:
                # Move on past what is settled, but not quite: a transaction's creation time is taken before
                # its commit, and threads commit out of order, so one created a moment ago may appear late.
                settled_to = unsettled if unsettled is not None else records[-1].created_at
                cursor = max(cursor, settled_to - _COMMIT_LAG_S)
            counts: dict[str, int] = {}
            for row in shown.values():
                counts[row[4]] = counts.get(row[4], 0) + 1
            summary = f"{len(shown)}/{expected} final: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            live.update(_table(sorted(shown.values(), key=lambda r: order[r[0]]), summary + "   (Ctrl-C stops)"))
            if len(shown) >= expected and done_at is None:
                done_at = time.monotonic()
            if exit_after is not None and done_at is not None and time.monotonic() - done_at >= exit_after:
                return
            time.sleep(0.5)
