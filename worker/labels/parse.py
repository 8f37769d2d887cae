"""A batch of outcome labels, checked row by row before anything is recorded.

A labels CSV file has one label per row: the transaction id, the label and the date it happened
(``YYYY-MM-DD``, or an ISO 8601 time whose UTC date is taken). A first row naming the columns
(``transaction_id,label,date``, in any order, with other columns ignored) is a header; without one the
columns are those three, in that order. Blank lines are skipped. Every problem names its line;
:class:`LabelsRefused` carries all of them, and then nothing of the file is recorded.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from worker.errors import InputError
from worker.labels.codes import UnknownLabel, canonical
from worker.masking import mask_text

MAX_ID_CHARS = 64  # the ledger's transaction_id column
SHOWN_PROBLEMS = 20  # a message lists this many problems, then counts the rest
_COLUMNS = {
    "transaction_id": {"transaction_id", "transactionid", "transaction", "txid", "tx_id"},
    "label": {"label", "outcome", "code", "return_code", "reason_code"},
    "date": {"date", "occurred_on", "return_date", "on", "when"},
}
_PRINTABLE_ID = re.compile(r"[\x21-\x7e]{1,64}")


@dataclass(frozen=True, slots=True)
class LabelRow:
    """One label to record: ``where`` names its place for messages (``returns.csv:7``, ``labels[6]``);
    ``line`` is the line number (or the item's place, from 1) kept with it in the ledger."""

    where: str
    line: int
    transaction_id: str
    label: str  # canonical (worker.labels.codes)
    occurred_on: date


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a batch, at ``where`` (free of personal data: cells are masked)."""

    where: str
    message: str

    def render(self) -> str:
        """``where: message``."""
        return f"{self.where}: {self.message}"


class LabelsRefused(InputError):
    """A batch of labels with problems: nothing of it was recorded. ``problems`` lists every one."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = tuple(problems)
        shown = "; ".join(p.render() for p in self.problems[:SHOWN_PROBLEMS])
        more = len(self.problems) - SHOWN_PROBLEMS
        super().__init__(f"{shown}{f' (and {more} more)' if more > 0 else ''}; nothing was recorded")


def shown(cell: str) -> str:
    """A cell as a message may show it: masked (a card or account number typed in the wrong column
    is hidden to its last 4 digits), and cut to 40 characters."""
    text = mask_text(cell.strip())
    return repr(text if len(text) <= 40 else text[:40] + "...")


def check_date(text: str) -> date:
    """``YYYY-MM-DD`` (or an ISO time with an offset, taken as its UTC date); ValueError saying so."""
    cell = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", cell):
        try:
            return date.fromisoformat(cell)
        except ValueError:
            raise ValueError(f"date {shown(cell)} is not a calendar date") from None
    try:
        when = datetime.fromisoformat(cell)
    except ValueError:
        raise ValueError(f"date {shown(cell)} is not a date; write it as YYYY-MM-DD") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC).date()
    except OverflowError:  # 0001-01-01T00:00+05:00 has no UTC date
        raise ValueError(f"date {shown(cell)} is out of range") from None


def check_item(where: str, line: int, transaction_id: str, label: str, occurred: str) -> LabelRow | Problem:
    """One row (a CSV line or an API item) checked on its own: the row, or the first problem with it."""
    txid = transaction_id.strip()
    if not txid:
        return Problem(where, "the transaction id is empty")
    if not _PRINTABLE_ID.fullmatch(txid):
        return Problem(where, f"transaction id {shown(txid)} is not a transaction id (1 to {MAX_ID_CHARS} "
                              "visible characters, no spaces)")
    try:
        canonical_label = canonical(label)
    except UnknownLabel as exc:
        return Problem(where, mask_text(str(exc)))
    try:
        occurred_on = check_date(occurred)
    except ValueError as exc:
        return Problem(where, str(exc))
    return LabelRow(where, line, txid, canonical_label, occurred_on)


def _fold(cell: str) -> str:
    return re.sub(r"[\s-]+", "_", cell.strip().lower())


def _header(cells: list[str]) -> dict[str, int] | None:
    """Column positions when ``cells`` is a header row (it names a transaction id column), else None."""
    folded = [_fold(c) for c in cells]
    if not any(f in _COLUMNS["transaction_id"] for f in folded):
        return None
    found: dict[str, int] = {}
    for i, f in enumerate(folded):
        for column, names in _COLUMNS.items():
            if f in names and column not in found:
                found[column] = i
    return found


def parse_csv(data: bytes, name: str) -> list[LabelRow]:
    """Every row of a labels CSV file (``name`` for messages), checked; LabelsRefused listing each
    problem by line (see :func:`read_csv`). For the ledger's checks too, in the same pass, give
    :func:`read_csv`'s rows and problems to ``LabelStore.record``."""
    rows, problems = read_csv(data, name)
    if problems:
        raise LabelsRefused(problems)
    return rows


def read_csv(data: bytes, name: str) -> tuple[list[LabelRow], list[Problem]]:
    """The rows of a labels CSV file (``name`` for messages) that are well formed, and every problem with the
    others, sorted by line: a row lacks a cell, a transaction id, label or date is malformed, a transaction
    appears twice, there is no row at all. LabelsRefused at once when the file as a whole cannot be read (not
    UTF-8, a header lacking a column)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise LabelsRefused([Problem(f"{name}:{line}", "the file is not UTF-8 text")]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    columns = {"transaction_id": 0, "label": 1, "date": 2}
    rows: list[LabelRow] = []
    problems: list[Problem] = []
    first = True
    try:
        for cells in reader:
            where = f"{name}:{reader.line_num}"
            if not any(c.strip() for c in cells):
                continue
            if first:
                first = False
                header = _header(cells)
                if header is not None:
                    missing = [c for c in ("transaction_id", "label", "date") if c not in header]
                    if missing:
                        raise LabelsRefused([Problem(where, f"the header has no {' or '.join(missing)} column; "
                                                            "name them transaction_id,label,date")])
                    columns = header
                    continue
            if len(cells) <= max(columns.values()):
                problems.append(Problem(where, f"{len(cells)} column{'s' if len(cells) != 1 else ''}, expected "
                                               "transaction_id,label,date"))
                continue
            item = check_item(where, reader.line_num, cells[columns["transaction_id"]], cells[columns["label"]],
                              cells[columns["date"]])
            (rows if isinstance(item, LabelRow) else problems).append(item)  # type: ignore[arg-type]
    except csv.Error as exc:
        problems.append(Problem(f"{name}:{reader.line_num}", f"not CSV ({exc})"))
    problems.extend(duplicates(rows))
    if not rows and not problems:
        problems.append(Problem(f"{name}:1", "no labels in the file; one row per label: transaction_id,label,date"))
    return rows, in_order(problems)


def in_order(problems: Iterable[Problem]) -> list[Problem]:
    """``problems`` sorted by their line (``f.csv:7``) or item (``labels[6]``); a line's own keep their order."""
    return sorted(problems, key=lambda p: _line_of(p.where))


def _line_of(where: str) -> int:
    tail = where.rsplit(":", 1)[-1].strip("[]").rsplit("[", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def duplicates(rows: Iterable[LabelRow]) -> list[Problem]:
    """A problem for every row whose transaction an earlier row of the batch labels already (one label per
    transaction per batch: which of two would be meant is not for vipflow to guess)."""
    seen: dict[str, LabelRow] = {}
    out = []
    for row in rows:
        earlier = seen.setdefault(row.transaction_id, row)
        if earlier is not row:
            out.append(Problem(row.where, f"transaction {shown(row.transaction_id)} is labelled already at "
                                          f"{earlier.where}; one label per transaction in a batch"))
    return out
