"""The named lists in the ledger: create, add, remove, import, read; every change a version.

Each change is one database transaction: the list's row is locked first (an
UPDATE, so that two people changing one list take turns on PostgreSQL and on
SQLite alike), the entries it adds or removes are worked out against what the list
holds, and when anything changes the list gets its next version, a
``list_changes`` row (who, when, what, how many) and one ``list_change_entries``
row per value added or removed; ``list_entries`` is updated to match. A change that
changes nothing (every value already there) makes no version. The history is
append-only: any version can be rebuilt (:meth:`ListStore.load_version`).

Values are personal data (card numbers, patron ids, routing numbers, IP
addresses): messages name a value's place (``entry 3``, ``FILE:17``), never the value.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from rules.lists import KINDS, LIST_NAME, LIST_NAME_RULE, EntryError, NamedList, normalize
from worker.errors import InputError
from worker.ledger import tables as t
from worker.ledger.commit import unavailable
from worker.wording import plural

CHUNK = 1000  # values per IN (...) or per multi-row insert
DEFAULT_MAX_ENTRIES = 1_000_000


class ListRefused(InputError):
    """A list command that cannot be done as asked (no such list, a bad entry, too many entries)."""


@dataclass(frozen=True)
class ListInfo:
    """One list as ``lists show`` lists it. Times epoch seconds."""

    name: str
    kind: str
    description: str | None
    version: int
    entries: int
    created_at: float
    created_by: str
    updated_at: float
    updated_by: str


@dataclass(frozen=True)
class ListChange:
    """One version of a list: what was done, by whom, when, how many entries it added and removed."""

    list_name: str
    version: int
    action: str
    at: float
    actor: str
    added: int
    removed: int
    source: str | None = None
    note: str | None = None


class _NoChange(Exception):
    """Control flow inside one change: ends its transaction unchanged."""

    def __init__(self, change: ListChange):
        self.change = change


def check_name(name: str) -> str:
    """``name`` when it is a list name; ListRefused saying what a name is otherwise."""
    if not LIST_NAME.match(name):
        raise ListRefused(f"list name {name!r}: use {LIST_NAME_RULE}")
    return name


def entries_of(kind: str, values: Iterable[str], where: Sequence[str] | None = None) -> list[str]:
    """Each value in its stored form (``rules.lists.normalize``), duplicates dropped, order kept; ListRefused
    naming the first bad one by its place: ``where[i]`` when given (``FILE.csv:17``), else ``entry N``."""
    out: dict[str, None] = {}
    for n, value in enumerate(values):
        try:
            out[normalize(kind, value)] = None
        except EntryError as exc:
            place = where[n] if where is not None else f"entry {n + 1}"
            raise ListRefused(f"{place}: {exc}") from None
    return list(out)


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]


class ListStore:
    """Lists on the ledger's engine. Database failures raise LedgerUnavailable (exit 1 for a command)."""

    def __init__(self, engine: Engine, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.engine = engine
        self.max_entries = max_entries

    # -- changes ---------------------------------------------------------------------------------------

    def create(self, name: str, kind: str, actor: str, description: str | None = None) -> ListChange:
        """A new, empty list (version 1); ListRefused for a bad name or kind, or a name in use."""
        check_name(name)
        if kind not in KINDS:
            raise ListRefused(f"kind {kind!r}: use one of {', '.join(KINDS)}")
        now = time.time()
        change = ListChange(name, 1, "create", now, actor, 0, 0, note=description)
        try:
            with self.engine.begin() as conn:
                if conn.execute(select(t.lists.c.name).where(t.lists.c.name == name)).first() is not None:
                    raise ListRefused(f"a list named {name!r} exists already (vipflow lists show {name})")
                conn.execute(insert(t.lists).values(
                    name=name, kind=kind, description=description, version=1, entries=0, created_at=now,
                    created_by=actor, updated_at=now, updated_by=actor))
                conn.execute(insert(t.list_changes).values(**_change_row(change)))
        except SQLAlchemyError as exc:
            raise unavailable(f"create list {name}", exc) from None
        return change

    def add(self, name: str, values: Sequence[str], actor: str, *, note: str | None = None,
            where: Sequence[str] | None = None) -> ListChange:
        """Add ``values`` (as people write them); the change made (``added`` 0 and the version unchanged
        when every one was there already). ListRefused: no such list, a bad value, past the size bound."""
        return self._change(name, actor, "add", values, note=note, where=where)

    def remove(self, name: str, values: Sequence[str], actor: str, *, note: str | None = None) -> ListChange:
        """Remove ``values``; the change made (``removed`` 0, no new version, when none was on the list)."""
        return self._change(name, actor, "remove", values, note=note)

    def replace_all(self, name: str, values: Sequence[str], actor: str, *, source: str | None = None,
                    note: str | None = None, where: Sequence[str] | None = None) -> ListChange:
        """Make the list hold exactly ``values`` (an import with ``--replace``): one version adding what is
        new and removing what is not in ``values``."""
        return self._change(name, actor, "import", values, note=note, where=where, source=source, replace=True)

    def import_values(self, name: str, values: Sequence[str], actor: str, *, source: str | None = None,
                      note: str | None = None, where: Sequence[str] | None = None) -> ListChange:
        """Add every value of an imported file in one version (nothing when one is bad)."""
        return self._change(name, actor, "import", values, note=note, where=where, source=source)

    def _change(self, name: str, actor: str, action: str, values: Sequence[str], *, note: str | None,
                where: Sequence[str] | None = None, source: str | None = None, replace: bool = False) -> ListChange:
        check_name(name)
        try:
            with self.engine.begin() as conn:
                now = time.time()
                # The UPDATE first: it locks the list's row (PostgreSQL) or the database (SQLite) until commit.
                locked = conn.execute(update(t.lists).where(t.lists.c.name == name).values(updated_at=now))
                if locked.rowcount == 0:
                    raise ListRefused(f"no list named {name!r} (vipflow lists show names them; vipflow lists "
                                      "create makes one)")
                row = conn.execute(select(t.lists.c.kind, t.lists.c.version, t.lists.c.entries)
                                   .where(t.lists.c.name == name)).one()
                wanted = entries_of(row.kind, values, where)
                if replace:
                    held = set(_values(conn, name))
                    adding = [v for v in wanted if v not in held]
                    keep = set(wanted)
                    removing = sorted(v for v in held if v not in keep)
                else:
                    present = _present(conn, name, wanted)
                    adding = [v for v in wanted if v not in present] if action != "remove" else []
                    removing = [v for v in wanted if v in present] if action == "remove" else []
                size = int(row.entries) + len(adding) - len(removing)
                if size > self.max_entries:
                    would = plural(size, "entry", "entries", grouped=True)
                    raise ListRefused(f"list {name!r} would hold {would}, more than lists.max_entries "
                                      f"({self.max_entries:,}); nothing was changed")
                if not adding and not removing:  # no version for nothing: roll the lock's UPDATE back
                    raise _NoChange(ListChange(name, int(row.version), action, now, actor, 0, 0, source, note))
                version = int(row.version) + 1
                change = ListChange(name, version, action, now, actor, len(adding), len(removing), source, note)
                conn.execute(insert(t.list_changes).values(**_change_row(change)))
                for part in _chunks(adding):
                    conn.execute(insert(t.list_change_entries), [
                        {"list_name": name, "version": version, "value": v, "op": "add"} for v in part])
                    conn.execute(insert(t.list_entries), [
                        {"list_name": name, "value": v, "added_version": version} for v in part])
                for part in _chunks(removing):
                    conn.execute(insert(t.list_change_entries), [
                        {"list_name": name, "version": version, "value": v, "op": "remove"} for v in part])
                    conn.execute(delete(t.list_entries).where(t.list_entries.c.list_name == name,
                                                              t.list_entries.c.value.in_(part)))
                conn.execute(update(t.lists).where(t.lists.c.name == name).values(
                    version=version, entries=size, updated_at=now, updated_by=actor))
                return change
        except _NoChange as nothing:
            return nothing.change
        except SQLAlchemyError as exc:
            raise unavailable(f"change list {name}", exc) from None

    # -- reads -----------------------------------------------------------------------------------------

    def infos(self) -> list[ListInfo]:
        """Every list, by name."""
        try:
            with self.engine.connect() as conn:
                rows = list(conn.execute(select(t.lists).order_by(t.lists.c.name)))
        except SQLAlchemyError as exc:
            raise unavailable("read the lists", exc) from None
        return [_info(r) for r in rows]

    def info(self, name: str) -> ListInfo:
        """One list; ListRefused when there is none by that name."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(t.lists).where(t.lists.c.name == name)).first()
        except SQLAlchemyError as exc:
            raise unavailable(f"read list {name}", exc) from None
        if row is None:
            raise ListRefused(f"no list named {name!r} (vipflow lists show names them)")
        return _info(row)

    def versions(self) -> dict[str, tuple[str, int]]:
        """Every list's name -> (kind, version): one small query (what a worker polls)."""
        try:
            with self.engine.connect() as conn:
                rows = list(conn.execute(select(t.lists.c.name, t.lists.c.kind, t.lists.c.version)))
        except SQLAlchemyError as exc:
            raise unavailable("read the lists' versions", exc) from None
        return {r.name: (r.kind, int(r.version)) for r in rows}

    def kinds(self) -> dict[str, str]:
        """Every list's name -> kind (what ``rules check`` checks rule files against)."""
        return {name: kind for name, (kind, _) in self.versions().items()}

    def history(self, name: str) -> list[ListChange]:
        """Every version of the list, oldest first."""
        c = t.list_changes.c
        try:
            with self.engine.connect() as conn:
                rows = list(conn.execute(select(t.list_changes).where(c.list_name == name).order_by(c.version)))
        except SQLAlchemyError as exc:
            raise unavailable(f"read list {name}'s history", exc) from None
        return [ListChange(r.list_name, int(r.version), r.action, r.at, r.actor, int(r.added), int(r.removed),
                           r.source, r.note) for r in rows]

    def load(self, name: str) -> NamedList:
        """The list as it is now, ready for lookups; its version and entries read in one snapshot."""
        try:
            with self.engine.connect() as conn:
                if self.engine.dialect.name == "postgresql":
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    row = conn.execute(select(t.lists.c.kind, t.lists.c.version)
                                       .where(t.lists.c.name == name)).first()
                    if row is None:
                        raise ListRefused(f"no list named {name!r} (vipflow lists show names them)")
                    return NamedList.build(name, row.kind, int(row.version), _values(conn, name))
        except SQLAlchemyError as exc:
            raise unavailable(f"read list {name}", exc) from None

    def load_named(self, names: Iterable[str]) -> dict[str, NamedList]:
        """The lists named, as they are now; ListRefused naming every one the ledger lacks."""
        wanted = sorted(set(names))
        known = self.versions()
        missing = [n for n in wanted if n not in known]
        if missing:
            raise ListRefused(f"no list named {', '.join(missing)} in the ledger (vipflow lists show names them)")
        return {name: self.load(name) for name in wanted}

    def load_version(self, name: str, version: int) -> NamedList:
        """The list as it was at ``version``, rebuilt from its history."""
        c = t.list_change_entries.c
        try:
            with self.engine.connect() as conn:
                kind = conn.execute(select(t.lists.c.kind).where(t.lists.c.name == name)).scalar()
                if kind is None:
                    raise ListRefused(f"no list named {name!r} (vipflow lists show names them)")
                held: set[str] = set()
                q = (select(c.value, c.op).where(c.list_name == name, c.version <= version)
                     .order_by(c.version))
                for value, op in conn.execute(q):
                    if op == "add":
                        held.add(value)
                    else:
                        held.discard(value)
        except SQLAlchemyError as exc:
            raise unavailable(f"read list {name}'s history", exc) from None
        return NamedList.build(name, str(kind), version, held)

    def has(self, name: str, value: str) -> int | None:
        """The version that added the entry holding ``value`` (as people write it), None when none does; see
        :meth:`holder`."""
        found = self.holder(name, value)
        return None if found is None else found[1]

    def holder(self, name: str, value: str, where: str = "entry 1") -> tuple[str, int] | None:
        """The entry (stored form) that puts ``value`` on the list and the version that added it; None when
        nothing does. Matched as the rules match a fact (``rules.lists``): equal for every kind but ``cidr``,
        where an address (or a range) is on the list when inside one of its ranges, so ``10.9.9.9`` is held by
        ``10.0.0.0/8``; the narrowest such range is the one given. One query: a range's candidates are its own
        network and each wider one (at most 33 for IPv4, 129 for IPv6). ListRefused (naming ``where``, never
        the value) when ``value`` is not of the list's form; no such list."""
        kind = self.info(name).kind
        stored = entries_of(kind, [value], [where])[0]
        candidates = _supernets(stored) if kind == "cidr" else [stored]
        e = t.list_entries.c
        try:
            with self.engine.connect() as conn:
                rows = list(conn.execute(select(e.value, e.added_version)
                                         .where(e.list_name == name, e.value.in_(candidates))))
        except SQLAlchemyError as exc:
            raise unavailable(f"read list {name}", exc) from None
        if not rows:
            return None
        rank = {c: n for n, c in enumerate(candidates)}  # narrowest first
        best = min(rows, key=lambda r: rank[r.value])
        return str(best.value), int(best.added_version)

    def entries(self, name: str, limit: int | None = None) -> list[str]:
        """The list's entries in their stored form, sorted (at most ``limit``)."""
        e = t.list_entries.c
        q = select(e.value).where(e.list_name == name).order_by(e.value)
        if limit is not None:
            q = q.limit(limit)
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(q).scalars())
        except SQLAlchemyError as exc:
            raise unavailable(f"read list {name}", exc) from None

    def count(self) -> int:
        """How many lists there are."""
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(t.lists)).scalar_one())
        except SQLAlchemyError as exc:
            raise unavailable("read the lists", exc) from None


def _supernets(network: str) -> list[str]:
    """``network`` (a stored range) and every range holding it, narrowest first, in their stored form."""
    net = ipaddress.ip_network(network)
    return [str(net.supernet(new_prefix=n)) for n in range(net.prefixlen, -1, -1)]


def _values(conn: Connection, name: str) -> list[str]:
    return list(conn.execute(select(t.list_entries.c.value).where(t.list_entries.c.list_name == name)).scalars())


def _present(conn: Connection, name: str, values: Sequence[str]) -> set[str]:
    e = t.list_entries.c
    found: set[str] = set()
    for part in _chunks(values):
        found.update(conn.execute(select(e.value).where(e.list_name == name, e.value.in_(part))).scalars())
    return found


def _change_row(change: ListChange) -> dict[str, object]:
    return {"list_name": change.list_name, "version": change.version, "action": change.action, "at": change.at,
            "actor": change.actor, "added": change.added, "removed": change.removed, "source": change.source,
            "note": change.note}


def _info(r: object) -> ListInfo:
    m = r._mapping  # type: ignore[attr-defined]
    return ListInfo(m["name"], m["kind"], m["description"], int(m["version"]), int(m["entries"]),
                    m["created_at"], m["created_by"], m["updated_at"], m["updated_by"])
