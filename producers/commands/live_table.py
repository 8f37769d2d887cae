"""A live table of decisions as workers record them in the ledger, and the summary after it (``vipflow run``)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from producers.commands.output import console as make_console
from rules.money import format_amount
from worker.ledger.states import State, is_settled

_STYLE = {State.APPROVED: "green", State.REVIEW: "yellow", State.REJECTED: "red", State.FAILED: "red",
          State.EXPIRED: "red"}
_BATCH = 1000  # transactions read per poll
_COMMIT_LAG_S = 5.0  # how far behind the newest settled transaction each poll starts again
_ORDER = (State.APPROVED, State.REVIEW, State.REJECTED, State.FAILED, State.EXPIRED)
_TOP = 4  # reasons shown per state in the summary


@dataclass(frozen=True)
class Row:
    """One settled transaction as the table shows it; ``reasons``: what put it in its state."""

    transaction_id: str
    transaction_type: str
    amount: str
    outcome: str
    state: State
    rules: str
    reasons: tuple[str, ...]


def row_of(record: Any) -> Row:
    """The row of a settled ``TransactionRecord``. Its reasons are the matched rules of the decided outcome
    (``(default)`` when none matched); one a person decided says so; one whose state is not its outcome's
    otherwise (a VIP refusal sent to review, an error notification) gives its review reason or error."""
    decision = record.decision or {}
    outcome = str(decision.get("outcome", "-"))
    matched = decision.get("matched", [])
    state = State(str(record.state))
    reasons: tuple[str, ...] = tuple(str(m["id"]) for m in matched if m.get("outcome") == outcome) or ("(default)",)
    expected = {"approve": State.APPROVED, "review": State.REVIEW, "reject": State.REJECTED}.get(outcome)
    if outcome == "review" and state in (State.APPROVED, State.REJECTED):
        reasons = (f"{state} in review",)  # a person decided
    elif state is not expected:
        errors = record.errors or ()
        detail = record.review_reason or (errors[-1].get("message") if errors else None) or f"{outcome} -> {state}"
        from worker.masking import mask_text

        reasons = (mask_text(str(detail))[:60],)  # free text: VIP's and the wallet's words may name the patron
    return Row(record.transaction_id, record.transaction_type or "?", format_amount(record.amount), outcome, state,
               ", ".join(str(m["id"]) for m in matched) or "(default)", reasons)


def summary_lines(rows: Iterable[Row]) -> list[str]:
    """Counts per final state with their share, then per state the most frequent reasons."""
    rows = list(rows)
    by_state: dict[State, Counter[str]] = {}
    for row in rows:
        by_state.setdefault(row.state, Counter()).update(row.reasons)
    counts = Counter(row.state for row in rows)
    total = len(rows) or 1
    states = [s for s in _ORDER if s in counts] + sorted(s for s in counts if s not in _ORDER)
    head = ", ".join(f"{counts[s]} {s} ({100 * counts[s] / total:.0f}%)" for s in states)
    lines = [f"{len(rows)} decided: {head or 'none'}"]
    for state in states:
        top = ", ".join(f"{reason} {n}" for reason, n in by_state[state].most_common(_TOP))
        lines.append(f"  {state:<9} {counts[state]:>4}  {top}")
    return lines


_SHOWN = 25  # rows in the table: the newest
_FILE_WIDTH = 200  # columns of the table written into a file or a pipe


def wide_unless_terminal(console: Console) -> Console:
    """``console``, made ``_FILE_WIDTH`` columns wide when it writes into a file or a pipe (which have no
    width: rich's default of 80 would fold the rule names mid-word)."""
    if not console.is_terminal and console.width < _FILE_WIDTH:
        console.width = _FILE_WIDTH
    return console


def _table(rows: list[Row], summary: str) -> Table:
    """The last 25 rows (the caption says so when there are more). Transaction ids and amounts, and the
    short words beside them, are never cut nor wrapped (each such column as wide as its longest value); on a
    narrow terminal the rules fold instead."""
    if len(rows) > _SHOWN:
        # On a line of its own: folded into the table's width, the commands would break mid-word.
        summary = f"{summary}\nthe last {_SHOWN} of {len(rows)} shown (vipflow review list, vipflow tx show ID)"
    rows = rows[-_SHOWN:]
    table = Table(title="vipflow decisions", caption=summary, expand=False)
    values: dict[str, list[str]] = {
        "transaction": [r.transaction_id for r in rows], "type": [r.transaction_type for r in rows],
        "amount": [r.amount for r in rows], "outcome": [r.outcome for r in rows],
        "state": [str(r.state) for r in rows]}
    for name, shown in values.items():
        table.add_column(name, justify="right" if name == "amount" else "left", no_wrap=True,
                         min_width=max([len(name), *map(len, shown)]))
    table.add_column("rules", overflow="fold")
    for row in rows:
        table.add_row(row.transaction_id, row.transaction_type, row.amount, row.outcome,
                      f"[{_STYLE.get(row.state, 'white')}]{row.state}[/]", row.rules)
    return table


def follow_decisions(settings: Any, *, since: float, expected: int, children_check: Callable[[], None],
                     exit_after: float | None, console: Console | None = None) -> list[Row]:
    """Poll the ledger for transactions created after ``since`` (epoch seconds) and redraw the table until
    interrupted (or ``exit_after`` seconds after ``expected`` are settled); then print the summary. Returns
    the rows shown (on Ctrl-C the summary is printed and KeyboardInterrupt goes on)."""
    from worker.ledger import Ledger

    ledger = Ledger.open(settings.database.url)
    shown: dict[str, Row] = {}
    console = wide_unless_terminal(console or make_console(highlight=True))  # a reader that leaves ends it
    try:
        with Live(_table([], "waiting for notifications ..."), console=console, refresh_per_second=4) as live:
            _poll(ledger, shown, since, expected, children_check, exit_after, live)
    finally:
        ledger.close()
        console.print()
        console.print("\n".join(summary_lines(shown.values())), soft_wrap=True, markup=False, highlight=False)
    return list(shown.values())


def _poll(ledger: Any, shown: dict[str, Row], since: float, expected: int, children_check: Callable[[], None],
          exit_after: float | None, live: Live) -> None:
    from worker.errors import LedgerUnavailable

    order: dict[str, float] = {}
    cursor = since - 1  # the oldest creation time that may still change; everything before is shown
    done_at: float | None = None
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
            shown[record.transaction_id] = row_of(record)
            order.setdefault(record.transaction_id, record.updated_at)
        if len(records) >= _BATCH:  # a full batch: page on past all of it, the rest next time
            cursor = records[-1].created_at
        elif records:
            # Move on past what is settled, but not quite: a transaction's creation time is taken before
            # its commit, and threads commit out of order, so one created a moment ago may appear late.
            settled_to = unsettled if unsettled is not None else records[-1].created_at
            cursor = max(cursor, settled_to - _COMMIT_LAG_S)
        counts = Counter(str(row.state) for row in shown.values())
        summary = f"{len(shown)}/{expected} settled: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        live.update(_table(sorted(shown.values(), key=lambda r: order[r.transaction_id]),
                           summary + "   (Ctrl-C stops)"))
        if len(shown) >= expected and done_at is None:
            done_at = time.monotonic()
            if exit_after is None:  # running until Ctrl-C: say what the burst came to now, not only at the end
                live.console.print("\n".join(["the burst is decided:", *summary_lines(shown.values()),
                                              "(the table goes on with what reviewers do; Ctrl-C stops)"]),
                                   soft_wrap=True, markup=False, highlight=False)
        if exit_after is not None and done_at is not None and time.monotonic() - done_at >= exit_after:
            return
        time.sleep(0.5)
