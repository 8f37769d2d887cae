"""Named lists for the rules: what a list holds, how a fact is matched against it, membership facts.

A rule tests a fact against a list by name (``{vip_card_number: {in_list: blocked-cards}}``). The rules
package never reads a list's store: the caller hands it the lists in force as a mapping of name to
:class:`NamedList` (the worker builds them from the ledger, the YAML tests from a case's ``lists:``),
and before evaluation each (fact, list) pair a ruleset names becomes one boolean membership fact
(:func:`membership`): durable_rules and the oracle then compare that fact with ``true``/``false`` like
any other, so a list of 100,000 entries costs one set lookup, not 100,000 comparisons.

Kinds, and the fact each one may be tested against:

========  =====================  ===========================================================
kind      fact                   an entry, and how a fact matches it
========  =====================  ===========================================================
card      ``vip_card_number``    6 to 19 digits (VIP's format); equal
patron    ``patron_id``          the operator's id, 1 to 64 characters; equal
routing   ``bank_routing_number``  8 or 9 digits (VIP's format); equal
bank      ``bank_name``          a bank's name; equal ignoring case and runs of spaces
cidr      ``location``           an IP range (``10.0.0.0/8``, ``2001:db8::/32``) or one address;
                                 the fact (the device's IP address) matches when inside a range
========  =====================  ===========================================================

A fact that is unknown, or not of the list's form (a ``location`` that is not an IP address), has no
membership (None): ``in_list`` and ``not_in_list`` are both false for it, as any comparison with an
unknown fact is, and ``not: {x: {in_list: L}}`` is true.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rules.errors import RuleError, RuleFileError
from rules.model import RuleSet

ListKind = Literal["card", "patron", "routing", "bank", "cidr"]
KINDS: tuple[ListKind, ...] = ("card", "patron", "routing", "bank", "cidr")
# Which fact a list of each kind is tested against (``rules check`` refuses any other pairing).
FACT_OF_KIND: dict[str, str] = {
    "card": "vip_card_number",
    "patron": "patron_id",
    "routing": "bank_routing_number",
    "bank": "bank_name",
    "cidr": "location",
}
KIND_OF_FACT: dict[str, str] = {fact: kind for kind, fact in FACT_OF_KIND.items()}
KIND_WORDS: dict[str, str] = {
    "card": "VIP card numbers", "patron": "patron ids", "routing": "bank routing numbers",
    "bank": "bank names", "cidr": "IP ranges (CIDR)",
}
LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
LIST_NAME_RULE = "1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit"
PATRON_ID_MAX = 64

_CARD = re.compile(r"[0-9]{6,19}")
_ROUTING = re.compile(r"[0-9]{8,9}")
_SPACES = re.compile(r"\s+")


class EntryError(RuleError):
    """A list entry that is not of the list's kind; the message names the rule, never the value."""


def normalize(kind: str, value: str) -> str:
    """The stored form of one entry of a list of ``kind``; EntryError saying what form is expected.

    ``card``/``routing``: digits as VIP sends them; ``patron``: trimmed; ``bank``: trimmed, runs of
    spaces as one, lower case (matched without regard to case); ``cidr``: the canonical network
    (``10.0.0.0/8``; one address is ``/32`` or ``/128``; an IPv4-mapped IPv6 range is its IPv4 range);
    host bits set are refused, not guessed.
    """
    text = value.strip()
    if kind == "card":
        if not _CARD.fullmatch(text):
            raise EntryError("a VIP card number is 6 to 19 digits")
        return text
    if kind == "routing":
        if not _ROUTING.fullmatch(text):
            raise EntryError("a bank routing number is 8 or 9 digits")
        return text
    if kind == "patron":
        if not 1 <= len(text) <= PATRON_ID_MAX:
            raise EntryError(f"a patron id is 1 to {PATRON_ID_MAX} characters")
        return text
    if kind == "bank":
        folded = _SPACES.sub(" ", text).casefold()
        if not folded or len(folded) > 200:
            raise EntryError("a bank name is 1 to 200 characters")
        return folded
    if kind == "cidr":
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise EntryError("an IP range is an address or address/prefix, e.g. 203.0.113.0/24") from None
            raise EntryError(f"an IP range has no host bits set past its prefix (did you mean {loose}?)") from None
        mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
        if mapped is not None and network.prefixlen >= 96:  # ::ffff:a.b.c.d/120 is an IPv4 range: kept as one
            return str(ipaddress.IPv4Network((mapped, network.prefixlen - 96)))
        return str(network)
    raise EntryError(f"unknown list kind '{kind}'; use one of {', '.join(KINDS)}")


def _fact_form(kind: str, value: Any) -> str | None:
    """A fact value in the form its list stores, or None when it cannot be one (never an error)."""
    if not isinstance(value, str):
        return None
    if kind == "bank":
        return _SPACES.sub(" ", value.strip()).casefold()
    return value.strip()


class _Ranges:
    """IP ranges by prefix length: a lookup masks the address once per length present (at most 33 or
    129, a handful in practice), so 100,000 ranges cost a handful of set lookups. Addresses are parsed
    with ``socket.inet_pton`` (strict dotted quads and RFC 4291 text; ten times ``ipaddress``'s speed)."""

    def __init__(self, networks: Iterable[str]):
        by_len: dict[tuple[int, int], set[int]] = {}
        for text in networks:
            net = ipaddress.ip_network(text)
            by_len.setdefault((net.version, net.prefixlen), set()).add(int(net.network_address))
        self._v4 = self._table(by_len, 4, 32)
        self._v6 = self._table(by_len, 6, 128)

    @staticmethod
    def _table(by_len: dict[tuple[int, int], set[int]], version: int,
               bits: int) -> tuple[tuple[int, frozenset[int]], ...]:
        full = (1 << bits) - 1
        lengths = sorted((n for v, n in by_len if v == version), reverse=True)  # narrowest ranges first
        return tuple((full ^ ((1 << (bits - n)) - 1), frozenset(by_len[(version, n)])) for n in lengths)

    @staticmethod
    def _parse(text: str) -> tuple[int, int] | None:
        """(IP version, the address as an integer), or None when ``text`` is not an address."""
        text = text.strip()
        try:
            if ":" in text:
                value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
                if value >> 32 == 0xFFFF:  # ::ffff:a.b.c.d, an IPv4 address written as IPv6
                    return 4, value & 0xFFFFFFFF
                return 6, value
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
        except OSError:
            return None

    def contains(self, text: str) -> bool | None:  # the hot path (every decision): _parse inlined
        text = text.strip()
        try:
            if ":" in text:
                value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
                if value >> 32 == 0xFFFF:  # ::ffff:a.b.c.d, an IPv4 address written as IPv6
                    value &= 0xFFFFFFFF
                    table = self._v4
                else:
                    table = self._v6
            else:
                value = int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
                table = self._v4
        except OSError:
            return None
        return any(value & mask in starts for mask, starts in table)

    def holding(self, text: str) -> str | None:
        """The narrowest range (its stored form, ``10.0.0.0/8``) holding the address ``text``, else None."""
        parsed = self._parse(text)
        if parsed is None:
            return None
        version, value = parsed
        kind = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        for mask, starts in self._v4 if version == 4 else self._v6:
            if value & mask in starts:  # the mask's one bits are the prefix length
                return f"{kind(value & mask)}/{mask.bit_count()}"
        return None


@dataclass(frozen=True, eq=False)
class NamedList:
    """One list at one version, ready for lookups; build it with :meth:`build`."""

    name: str
    kind: str
    version: int
    size: int
    _entries: frozenset[str] = field(repr=False)
    _ranges: _Ranges | None = field(default=None, repr=False)

    @classmethod
    def build(cls, name: str, kind: str, version: int, entries: Iterable[str]) -> NamedList:
        """A list from its stored entries (already normalized, as :func:`normalize` gives them)."""
        if kind not in KINDS:
            raise RuleError(f"list '{name}': unknown kind '{kind}'")
        values = frozenset(entries)
        return cls(name, kind, version, len(values), values, _Ranges(values) if kind == "cidr" else None)

    @classmethod
    def of(cls, name: str, kind: str, values: Iterable[str], version: int = 1) -> NamedList:
        """A list from entries as people write them (normalized here; EntryError names the first bad one)."""
        out = []
        for n, value in enumerate(values, 1):
            try:
                out.append(normalize(kind, str(value)))
            except EntryError as exc:
                raise EntryError(f"list '{name}' entry {n}: {exc}") from None
        return cls.build(name, kind, version, out)

    def holding(self, value: Any) -> str | None:
        """The entry (stored form) that puts the fact value on the list: for a cidr list the narrowest range
        holding the address, else the value's stored form; None when it is not on the list or cannot be."""
        if not self.contains(value):
            return None
        if self._ranges is not None:
            return self._ranges.holding(value)
        return _fact_form(self.kind, value)

    def contains(self, value: Any) -> bool | None:
        """Whether the fact value is on the list; None when it is unknown or cannot be one."""
        if value is None:
            return None
        if self._ranges is not None:
            return self._ranges.contains(value) if isinstance(value, str) else None
        form = _fact_form(self.kind, value)
        return None if form is None else form in self._entries


class ListLookup(Protocol):
    """The lists in force, by name (a ``Mapping[str, NamedList]`` is one)."""

    def get(self, name: str, /) -> NamedList | None: ...


EMPTY: Mapping[str, NamedList] = {}


def membership_key(flat_path: str, name: str) -> str:
    """The flat fact that holds whether the fact at ``flat_path`` is on list ``name``."""
    return f"in_list__{flat_path}__{name}"


@dataclass(frozen=True)
class MembershipCheck:
    """One (fact, list) pair a ruleset tests, with its keys worked out once (``RuleBook`` keeps them)."""

    path: str
    name: str
    flat_path: str
    key: str
    kind: str  # the kind of list the fact takes


def membership_checks(pairs: Iterable[tuple[str, str]]) -> tuple[MembershipCheck, ...]:
    """The checks for a ruleset's (fact path, list name) pairs (``RuleSet.list_pairs``)."""
    out = []
    for path, name in pairs:
        flat_path = path.replace(".", "__")
        out.append(MembershipCheck(path, name, flat_path, membership_key(flat_path, name), KIND_OF_FACT[path]))
    return tuple(out)


def membership(checks: Iterable[MembershipCheck] | Iterable[tuple[str, str]], flat: dict[str, Any],
               lists: ListLookup) -> dict[str, int]:
    """Add to prepared ``flat`` facts one membership fact per check (or (fact path, list name) pair); return
    the version of each list used. RuleError when a list named is not in ``lists``, or holds another kind
    than the fact (a rule must never decide on a list it cannot see: the caller sends the transaction to
    review)."""
    versions: dict[str, int] = {}
    for check in checks:
        if not isinstance(check, MembershipCheck):
            (check,) = membership_checks([check])
        found = lists.get(check.name)
        if found is None:
            raise RuleError(f"the rules name list '{check.name}', which is not known (vipflow lists show)")
        if found.kind != check.kind:
            raise RuleError(f"list '{check.name}' holds {KIND_WORDS[found.kind]}; the rules test '{check.path}' "
                            "against it")
        flat[check.key] = found.contains(flat.get(check.flat_path))
        versions[check.name] = found.version
    return versions


def check_lists(ruleset: RuleSet, kinds: Mapping[str, str]) -> list[RuleFileError]:
    """The problems with the lists a ruleset names, each at its file:line and rule: a list not in
    ``kinds`` (every known list's name -> kind), or a list of another kind than the fact it tests."""
    problems: list[RuleFileError] = []
    for use in ruleset.list_refs:
        kind = kinds.get(use.name)
        if kind is None:
            problems.append(RuleFileError(ruleset.file, use.line, f"unknown list '{use.name}' (vipflow lists show "
                                          "names them all; vipflow lists create makes one)", use.rule_id))
        elif FACT_OF_KIND.get(kind) != use.path:
            problems.append(RuleFileError(ruleset.file, use.line, f"list '{use.name}' holds {KIND_WORDS[kind]}; "
                                          f"'{use.path}' is tested against a list of kind "
                                          f"{KIND_OF_FACT[use.path]}", use.rule_id))
    return problems
