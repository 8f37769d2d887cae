"""Reading a list's entries from a CSV file (``vipflow lists import NAME FILE.csv``).

One entry per row, in the first column; other columns are ignored (a note, a date:
nothing of them is stored). A first row whose first cell is ``value``, ``entry`` or
the name of the list's kind or its fact (``card``, ``vip_card_number``, ``cidr``,
``location``, ...) is a header. Blank rows and rows whose first cell starts with
``#`` are skipped. UTF-8 (a byte-order mark is allowed). A bad row stops the import
before anything is written, naming ``FILE:LINE`` and what the entry should look
like, never the entry itself (it may be personal data).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from rules.lists import FACT_OF_KIND
from worker.lists.store import ListRefused, entries_of

MAX_FILE_BYTES = 256 * 1024 * 1024  # far above lists.max_entries' worth of any kind


@dataclass(frozen=True)
class CsvEntries:
    """The entries of a file in their stored form (duplicates dropped), and where the file came from."""

    values: tuple[str, ...]
    rows: int  # entries read (before duplicates were dropped)
    source: str  # "NAME sha256:HEX" for the change's record


def read_csv(path: str | Path, kind: str) -> CsvEntries:
    """The entries of the CSV at ``path`` for a list of ``kind``; ListRefused (exit 2) naming FILE:LINE or
    the file's problem."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise ListRefused(f"{p}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; split it")
        data = p.read_bytes()
    except OSError as exc:
        raise ListRefused(f"cannot read {p} ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ListRefused(f"{p}: not UTF-8 text") from None
    headers = {"value", "entry", kind, FACT_OF_KIND.get(kind, kind)}
    values: list[str] = []
    where: list[str] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            line = reader.line_num
            first = row[0].strip() if row else ""
            if not first or first.startswith("#"):
                continue
            if not values and line == 1 and first.lower() in headers:
                continue
            values.append(first)
            where.append(f"{p}:{line}")
    except csv.Error as exc:
        raise ListRefused(f"{p}:{reader.line_num}: not CSV ({exc}); nothing was imported") from None
    try:
        stored = entries_of(kind, values, where)
    except ListRefused as exc:
        raise ListRefused(f"{exc}; nothing was imported") from None
    source = f"{p.name} sha256:{hashlib.sha256(data).hexdigest()}"
    return CsvEntries(tuple(stored), len(values), source)
