"""The lists ``vipflow rules check`` and ``rules explain`` read: the ledger's, at ``database.url``.

``rules check`` checks every list a rule names against the ledger (that it exists and holds what
its fact is: a ``location`` against a ``cidr`` list). Without a ledger to read (``--no-ledger``, or
the SQLite file ``database.url`` names does not exist, as on a CI machine), list names are checked
for their form only, and a note on stderr says so: the worker still refuses, at start and at every
rule reload, rules naming a list its ledger lacks. A ledger that does not answer is an error (exit 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rules.errors import RuleFileError
    from rules.lists import NamedList
    from rules.model import RuleSet


def _settings(args: argparse.Namespace) -> object:
    from worker.config import load_settings

    return load_settings(getattr(args, "config", None))


def _no_ledger(url: str) -> str | None:
    """Why there is no ledger to read lists from (a SQLite file that is not there), else None."""
    import os

    from worker.ledger.schema import sqlite_file

    path = sqlite_file(url)
    if path is not None and not os.path.isfile(path):
        return f"no ledger at {path} (database.url)"
    return None


def check_rule_lists(args: argparse.Namespace, rulesets: list[RuleSet]) -> list[RuleFileError]:
    """The problems with the lists the rulesets name (file:line, rule), against the ledger's lists; a note on
    stderr instead when there is no ledger to read."""
    from rules.lists import check_lists
    from worker.ledger import Ledger
    from worker.lists.store import ListStore

    named = sorted({n for rs in rulesets for n in rs.list_names})
    if not named:
        return []
    if getattr(args, "no_ledger", False):
        print(f"vipflow: lists not checked, --no-ledger: {', '.join(named)}; workers refuse rules naming a list "
              "their ledger lacks", file=sys.stderr)
        return []
    url = _settings(args).database.url  # type: ignore[attr-defined]
    missing = _no_ledger(url)
    if missing is not None:
        print(f"vipflow: lists not checked, {missing}: {', '.join(named)}; workers refuse rules naming a list "
              "their ledger lacks", file=sys.stderr)
        return []
    with Ledger.open(url, create=False) as ledger:
        kinds = ListStore(ledger.engine).kinds()
    return [p for rs in rulesets for p in check_lists(rs, kinds)]


def ledger_lists(args: argparse.Namespace, ruleset: RuleSet) -> Mapping[str, NamedList]:
    """The lists ``ruleset`` names, as the ledger holds them now; InputError (exit 2) when there is no ledger
    or it lacks one of them."""
    from worker.errors import InputError
    from worker.ledger import Ledger
    from worker.lists.store import ListRefused, ListStore

    if not ruleset.list_names:
        return {}
    url = _settings(args).database.url  # type: ignore[attr-defined]
    missing = _no_ledger(url)
    if missing is not None:
        raise InputError(f"ruleset {ruleset.name} names lists ({', '.join(ruleset.list_names)}) and there is "
                         f"no ledger to read them from: {missing}")
    with Ledger.open(url, create=False) as ledger:
        store = ListStore(ledger.engine)
        try:
            return {name: store.load(name) for name in ruleset.list_names}
        except ListRefused as exc:
            raise InputError(f"{exc}; ruleset {ruleset.name} names it") from None
