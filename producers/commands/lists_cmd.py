"""``vipflow lists create|add|remove|import|show``: the named lists the rules test facts against.

Every change is a new version of the list in the ledger, recorded with the command-line actor
(``ledger.actor``, else the operating-system user) and the reason given. Entries are patrons' data
(card numbers, patron ids, routing numbers, IP addresses): they are never echoed; ``show --entries``
masks them. Exit 2 on a bad name, kind or entry (naming its place, never its value), no such list,
or a list past ``lists.max_entries``; 1 when the ledger failed.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

KINDS = ("card", "patron", "routing", "bank", "cidr")  # rules.lists.KINDS, without importing at parse time


def add_parser(subparsers: Any) -> None:
    """Register ``lists`` and its subcommands."""
    from producers.commands.numbers import whole

    lists = subparsers.add_parser("lists", help="named lists (blocked cards, patrons, banks, IP ranges) for rules")
    sub = lists.add_subparsers(dest="lists_command", required=True, metavar="ACTION")

    create = sub.add_parser("create", help="a new, empty list")
    create.add_argument("name", help="the name rules use (in_list: NAME): lower-case letters, digits, - or _")
    create.add_argument("--kind", required=True, choices=KINDS,
                        help="what it holds: card (vip_card_number), patron (patron_id), routing "
                             "(bank_routing_number), bank (bank_name), cidr (IP ranges, for location)")
    create.add_argument("--description", help="what the list is for")
    create.set_defaults(func=create_cmd)

    for action, helptext in (("add", "add entries (one new version)"), ("remove", "remove entries (one new version)")):
        cmd = sub.add_parser(action, help=helptext)
        cmd.add_argument("name")
        cmd.add_argument("values", nargs="+", metavar="VALUE")
        cmd.add_argument("--reason", help="why, kept with the version")
        cmd.set_defaults(func=change_cmd, action=action)

    imp = sub.add_parser("import", help="add every entry of a CSV file (one per row, first column) in one version")
    imp.add_argument("name")
    imp.add_argument("file", metavar="FILE.csv")
    imp.add_argument("--replace", action="store_true",
                     help="make the list hold exactly the file's entries (removing the others), in one version")
    imp.add_argument("--reason", help="why, kept with the version")
    imp.set_defaults(func=import_cmd)

    show = sub.add_parser("show", help="every list, or one list's versions (who, when, what)")
    show.add_argument("name", nargs="?")
    show.add_argument("--entries", action="store_true", help="also the entries (masked)")
    show.add_argument("--limit", type=whole(1), default=1000, help="at most this many entries (default 1000)")
    show.add_argument("--has", metavar="VALUE",
                      help="say whether VALUE is on the list (for a cidr list: inside one of its ranges, as the "
                           "rules match), which entry holds it and since which version")
    show.add_argument("--json", action="store_true", help="JSON lines")
    show.set_defaults(func=show_cmd)


def _store(args: argparse.Namespace, create: bool) -> tuple[Any, Any, str]:
    from worker.config import load_settings
    from worker.ledger import Ledger
    from worker.ledger.actor import cli_actor
    from worker.lists.store import ListStore

    settings = load_settings(getattr(args, "config", None))
    ledger = Ledger.open(settings.database.url, create=create)
    return ledger, ListStore(ledger.engine, settings.lists.max_entries), cli_actor(settings)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def create_cmd(args: argparse.Namespace) -> int:
    """Create the list (version 1, empty)."""
    ledger, store, actor = _store(args, create=True)
    with ledger:
        store.create(args.name, args.kind, actor, args.description)
    print(f"list {args.name} created: kind {args.kind}, v1, empty")
    return 0


def _entries(count: int) -> str:
    from producers.commands.output import plural

    return plural(count, "entry", "entries", grouped=True)


def _said(change: Any, info: Any) -> str:
    if not change.added and not change.removed:
        return f"list {change.list_name}: nothing changed, still v{info.version} ({_entries(info.entries)})"
    return (f"list {change.list_name} v{change.version}: {change.added:,} added, {change.removed:,} removed "
            f"({_entries(info.entries)})")


def change_cmd(args: argparse.Namespace) -> int:
    """Add or remove the values given, as one version."""
    ledger, store, actor = _store(args, create=False)
    with ledger:
        if args.action == "add":
            change = store.add(args.name, args.values, actor, note=args.reason)
            skipped = len(set(args.values)) - change.added
            extra = f"; {skipped:,} already on it" if skipped > 0 else ""
        else:
            change = store.remove(args.name, args.values, actor, note=args.reason)
            skipped = len(set(args.values)) - change.removed
            extra = f"; {skipped:,} not on it" if skipped > 0 else ""
        print(_said(change, store.info(args.name)) + extra)
    return 0


def import_cmd(args: argparse.Namespace) -> int:
    """Import a CSV file's entries in one version (all or nothing)."""
    from producers.commands.output import plural
    from worker.lists.csvfile import read_csv

    ledger, store, actor = _store(args, create=False)
    with ledger:
        found = read_csv(args.file, store.info(args.name).kind)
        if args.replace:
            change = store.replace_all(args.name, found.values, actor, source=found.source, note=args.reason)
        else:
            change = store.import_values(args.name, found.values, actor, source=found.source, note=args.reason)
        rows = plural(found.rows, "row", grouped=True)
        print(f"{rows} read ({len(found.values):,} distinct); " + _said(change, store.info(args.name)))
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    """Every list; or one list with its versions, and with ``--entries`` its entries masked."""
    ledger, store, _ = _store(args, create=False)
    with ledger:
        if args.name is None:
            return _show_all(store, args.json)
        info = store.info(args.name)
        if args.has is not None:
            return _show_has(store, info, args.has, args.json)
        history = store.history(args.name)
        entries = store.entries(args.name, args.limit) if args.entries else []
    from worker.masking import mask_text

    def said(note: str | None) -> str | None:  # free text: masked like a reviewer's reason
        return None if note is None else mask_text(note)

    if args.json:
        print(json.dumps(_info_dict(info)))
        for change in history:
            print(json.dumps({"version": change.version, "action": change.action, "at": change.at,
                              "actor": change.actor, "added": change.added, "removed": change.removed,
                              "source": change.source, "reason": said(change.note)}))
        for entry in entries:
            print(json.dumps({"entry": masked(info.kind, entry)}))
        return 0
    print(f"list {info.name}: kind {info.kind}, v{info.version}, {_entries(info.entries)}"
          + (f" - {said(info.description)}" if info.description else ""))
    for change in history:
        what = f"+{change.added:,} -{change.removed:,}" if change.action != "create" else "created"
        source = f"  from {change.source}" if change.source else ""
        reason = f"  ({said(change.note)})" if change.note and change.action != "create" else ""
        print(f"  v{change.version:<4} {_when(change.at)}  {change.actor:<24} {change.action:<7} {what}"
              f"{source}{reason}")
    if args.entries:
        for entry in entries:
            print(f"  {masked(info.kind, entry)}")
        if info.entries > len(entries):
            print(f"  ... {info.entries - len(entries):,} more (--limit)")
    return 0


def _info_dict(info: Any) -> dict[str, Any]:
    from worker.masking import mask_text

    description = None if info.description is None else mask_text(info.description)
    return {"name": info.name, "kind": info.kind, "description": description, "version": info.version,
            "entries": info.entries, "created_at": info.created_at, "created_by": info.created_by,
            "updated_at": info.updated_at, "updated_by": info.updated_by}


def _show_all(store: Any, as_json: bool) -> int:
    from producers.commands.output import noun_for

    infos = store.infos()
    for info in infos:
        if as_json:
            print(json.dumps(_info_dict(info)))
        else:
            entries = noun_for(info.entries, "entry", "entries")
            print(f"{info.name:<24} {info.kind:<8} v{info.version:<5} {info.entries:>9,} {entries:<7}  "
                  f"changed {_when(info.updated_at)} by {info.updated_by}")
    if not infos and not as_json:
        print("no lists; create one with `vipflow lists create NAME --kind card`")
    return 0


def _show_has(store: Any, info: Any, value: str, as_json: bool) -> int:
    """Whether ``value`` is on the list as the rules would match it (for a cidr list: inside one of its
    ranges), which entry holds it (masked as ``--entries`` shows it) and since which version."""
    found = store.holder(info.name, value, where="--has")
    entry, since = (None, None) if found is None else (masked(info.kind, found[0]), found[1])
    if as_json:
        print(json.dumps({"list": info.name, "version": info.version, "on_list": found is not None,
                          "added_version": since, "entry": entry}))
    elif found is None:
        print(f"not on list {info.name} (v{info.version})")
    elif info.kind == "cidr":
        print(f"on list {info.name}: inside its range {entry}, there since v{since} (now v{info.version})")
    else:
        print(f"on list {info.name} since v{since} (now v{info.version})")
    return 0


def masked(kind: str, entry: str) -> str:
    """An entry as ``show`` prints it: bank names and IP ranges of a /24 (IPv6 /48) or wider in clear (they
    name banks and networks, not a patron); card numbers, patron ids, routing numbers and narrower ranges
    (a device's address) masked to their last four characters or hidden."""
    if kind == "bank":
        return entry
    if kind == "cidr":
        address, _, length = entry.partition("/")
        wide = int(length) <= (24 if ":" not in address else 48)
        return entry if wide else f"***/{length}"
    from worker.masking import mask_value

    return mask_value(entry)
