"""Naming a ruleset version: a rule file, the files in force, or a version kept in the ledger.

A reference (``vipflow rules diff A B``, ``replay --dry-run --compare A B``) is one of:

- a path to a rule file: that file as it is now;
- ``NAME`` or ``NAME@current``: ruleset NAME (deposit, withdraw) in ``rules.path``;
  ``NAME@candidate``: in ``rules.candidate``;
- ``NAME@VERSION`` (``withdraw@7``) or ``NAME@HASH`` (at least 6 hex digits of the sha256 of the file's
  bytes): the text the ledger keeps, from the history of versions that went live
  (``worker.ledger.rule_history``) or from the texts of versions that decided anything. A version number
  that several different texts carried is ambiguous: the error lists their hashes to choose from.

History references need no file on disk: the text comes from the ledger and is checked like any rule file
(nothing in it is executed).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rules.book import rule_files
from rules.errors import RuleFilesInvalid
from rules.loader import load_ruleset_file, parse_ruleset
from rules.model import TRANSACTION_TYPES, RuleSet
from worker.config import Settings
from worker.errors import InputError
from worker.ledger.rule_history import RuleHistory

_HASH = re.compile(r"^[0-9a-fA-F]{6,64}$")


@dataclass(frozen=True)
class Resolved:
    """A ruleset version and how to name it to a person."""

    ruleset: RuleSet
    label: str  # e.g. "withdraw v7 (sha256 1a2b3c4d5e6f, ledger history)"
    tests_text: str | None = None  # its test file, when known (history rows keep it)


def label(rs: RuleSet, where: str) -> str:
    """``withdraw v7 (sha256 1a2b3c4d5e6f, WHERE)``."""
    return f"{rs.name} v{rs.version} (sha256 {rs.content_hash[:12]}, {where})"


def file_for(directory: Path, name: str) -> Path | None:
    """The rule file at ``directory`` (a folder or one file) holding ruleset ``name``, or None. A file that
    does not load is skipped (the caller's check of the folder reports it)."""
    for file in rule_files(directory):
        try:
            if load_ruleset_file(file).name == name:
                return file
        except RuleFilesInvalid:
            continue
    return None


def split_ref(ref: str) -> tuple[str, str]:
    """``NAME@WHICH`` to (NAME, WHICH); a bare NAME is (NAME, "current"). InputError for an unknown NAME or
    a WHICH that is neither current, candidate, a version number nor a hash prefix."""
    name, _, which = ref.partition("@")
    which = which or "current"
    if name not in TRANSACTION_TYPES:
        raise InputError(f"{ref!r}: not a rule file, nor a ruleset ({', '.join(TRANSACTION_TYPES)}) with an "
                         "optional @VERSION, @HASH, @current or @candidate")
    if which not in ("current", "candidate") and not which.isdigit() and not _HASH.match(which):
        raise InputError(f"{ref!r}: after @ give a version number, at least 6 hex digits of its sha256, "
                         "current or candidate")
    return name, which


def resolve(ref: str, settings: Settings, history: Callable[[], RuleHistory]) -> Resolved:
    """The ruleset version ``ref`` names (see the module docstring). ``history`` opens the ledger's history
    when a reference needs it. InputError when it names nothing; RuleFilesInvalid when a file does not load."""
    looks_like_a_file = "/" in ref or ref.endswith((".yaml", ".yml")) or "@" not in ref
    if looks_like_a_file and Path(ref).is_file():
        rs = load_ruleset_file(ref)
        return Resolved(rs, label(rs, str(ref)))
    name, which = split_ref(ref)
    if which in ("current", "candidate"):
        directory = settings.rules.path if which == "current" else settings.rules.candidate
        if directory is None:
            raise InputError(f"{ref!r}: rules.candidate is not set")
        file = file_for(directory, name)
        if file is None:
            raise InputError(f"{ref!r}: no loadable '{name}' ruleset in {directory} (vipflow rules check says why)")
        rs = load_ruleset_file(file)
        return Resolved(rs, label(rs, str(file)))
    return from_ledger(name, which, history())


def from_ledger(name: str, which: str, history: RuleHistory) -> Resolved:
    """Ruleset ``name``'s version ``which`` (a number or a hash prefix) as the ledger keeps it."""
    texts = history.texts(name, which)
    hashes = list(dict.fromkeys(str(t["content_hash"]) for t in texts))
    if not hashes:
        raise InputError(f"no {name} version {which} in the ledger (vipflow rules history {name} lists the "
                         "versions that went live)")
    if len(hashes) > 1:
        raise InputError(f"{name}@{which} names {len(hashes)} different texts ("
                         + ", ".join(h[:12] for h in hashes)
                         + f"); give one of these hashes instead, e.g. {name}@{hashes[0][:12]}")
    row = texts[0]
    rs = parse_ruleset(str(row["text"]).encode("utf-8"), f"{name}@{row['content_hash'][:12]} (ledger)")
    return Resolved(rs, label(rs, "ledger"), history.tests_for(rs.content_hash))
