"""A live table of decisions as workers record them (used by ``vipflow run``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

FINAL = {"approved", "review", "rejected", "failed"}
_STYLE = {"approved": "green", "review": "yellow", "rejected": "red", "failed": "red"}


def _table(rows: list[tuple[str, ...]], summary: str) -> Table:
    table = Table(title="vipflow decisions", caption=summary, expand=False)
    for name in ("transaction", "type", "amount", "outcome", "state", "rules"):
        table.add_column(name, justify="right" if name == "amount" else "left", overflow="fold")
    for row in rows[-25:]:
        table.add_row(*row[:4], f"[{_STYLE.get(row[4], 'white')}]{row[4]}[/]", row[5])
    return table


def follow_decisions(settings: Any, *, since: float, expected: int, children_check: Callable[[], None],
                     exit_after: float | None) -> None:
    """Poll transaction records created after ``since`` and redraw the table until interrupted."""
    from worker.store.connection import connect
    from worker.store.records import RecordStore

    store = RecordStore(connect(settings.redis), settings.redis.key_prefix)
    shown: dict[str, tuple[str, ...]] = {}
    order: dict[str, float] = {}
    done_at: float | None = None
    console = Console()
    with Live(_table([], "waiting for notifications ..."), console=console, refresh_per_second=4) as live:
        while True:
            children_check()
            for tx_id in store.ids():
                record = store.load(tx_id)
                if record is None or record.created_at < since - 1 or record.state not in FINAL:
                    continue
                decision = record.decision or {}
                rules = ", ".join(m["id"] for m in decision.get("matched", [])) or "(default)"
                shown[tx_id] = (tx_id, record.transaction_type or "?", record.amount or "?",
                                str(decision.get("outcome", "-")), record.state, rules)
                order.setdefault(tx_id, record.updated_at)
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
