"""Masking of patrons' personal data and secrets before anything is logged or shown.

IP addresses in free text are masked, except the operator's own: loopback
(127.0.0.0/8, ::1), the unspecified address (0.0.0.0, ::) and the hosts vipflow
itself listens on or connects to, as the configuration names them by address
(ingest and metrics hosts; the Redis, ledger, VIP Connect and wallet URLs; see
:func:`operator_hosts`). Those are infrastructure an operator needs to see, not a
patron's data. Private ranges are not exempt as such: a patron's address may be
one. A value under a personal-data key (``location``, ``ip``, ...) is hidden
whatever it holds, loopback included.

Free text (VIP Connect's error messages, the wallet's, anything logged) also has
e-mail addresses, phone numbers written with separators and patrons' names
masked: ``worker.masking_people`` says how a name is recognised without hiding
ordinary words.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from worker.masking_people import mask_people

if TYPE_CHECKING:
    from worker.config import Settings

# Folded key (lower case, no underscores) -> how to mask it.
_KEEP_LAST4 = {"vipcardnumber", "maskedbankaccountnumber", "bankroutingnumber", "vipaccountnumber",
               "maskedaccountnumber", "routingnumber", "accountnumber", "idnumber", "last4ssn",
               "patronid"}
_HIDE = {"firstname", "lastname", "name", "homephonenumber", "mobilephonenumber", "phone",
         "location", "ip", "address", "city", "zip", "email", "dateofbirth", "authorization",
         "token", "secretkey1", "secretkey2", "callbackkey", "password"}

# Identifiers and times that are not personal data, left as they are.
_PLAIN = {"timestamp", "transactionid", "notificationsenton", "approvalcalledon", "membersince",
          "lasttransaction", "receivedat", "at", "entryid", "ts", "id", "runtime",
          "contenthash"}  # a ruleset's SHA-256, on every "decided" line

_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
# Candidates only (two colons at least); ipaddress decides, so times such as 12:30:45 stay as they are.
_IPV6 = re.compile(r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|(?:\d{1,3}\.){3}\d{1,3})"
                   r"(?:%[0-9A-Za-z]+)?(?![0-9A-Za-z:.])")
_operator_ips: frozenset[str] = frozenset()
# Seven or more digits (card, account, phone numbers), but not Redis stream ids (ms-seq) nor the fraction
# of a number or a time (2022-10-03T14:23:09.2188558).
_LONG_DIGITS = re.compile(r"(?<!\.)\b\d{7,}\b(?!-\d)")


def _fold(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def mask_value(value: Any, keep_last: int = 4) -> str:
    """``'7210642759'`` -> ``'******2759'``; short values are hidden entirely."""
    text = str(value)
    if len(text) <= keep_last + 2:
        return "*" * len(text)
    return "*" * (len(text) - keep_last) + text[-keep_last:]


def mask_mapping(data: Any, names: Iterable[str] = ()) -> Any:
    """A deep copy of ``data`` with personal data and secrets masked by key, and every string masked as
    free text (:func:`mask_text`, with the patron's ``names`` when known: ``masking_people.names_in``)."""
    names = tuple(names)
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            folded = _fold(str(key))
            if value is None or isinstance(value, bool):
                out[key] = value
            elif folded in _HIDE:
                out[key] = "***"
            elif folded in _PLAIN and not isinstance(value, Mapping | list):
                out[key] = value
            elif folded in _KEEP_LAST4 and not isinstance(value, Mapping | list):
                out[key] = mask_value(value)
            else:
                out[key] = mask_mapping(value, names)
        return out
    if isinstance(data, list):
        return [mask_mapping(v, names) for v in data]
    if isinstance(data, str):
        return mask_text(data, names)
    return data


def operator_hosts(settings: Settings) -> set[str]:
    """The hosts vipflow listens on or connects to, from ``settings``: the ingest and metrics hosts and the
    hosts of the Redis, ledger, VIP Connect and wallet URLs (names as well as addresses; only addresses
    ever need exempting from masking)."""
    urls = (settings.redis.url, settings.database.url, settings.vip.base_url, settings.wallet.url)
    hosts = {settings.ingest.host, settings.worker.metrics_host}
    hosts.update(host for host, _ in settings.redis.sentinel_addresses())
    for url in urls:
        try:
            hosts.add(urlparse(url).hostname or "")
        except ValueError:
            continue  # a malformed URL is the configuration's to refuse, not this function's
    return {h for h in hosts if h}


def keep_operator_hosts(hosts: Iterable[str]) -> None:
    """From now on in this process, leave these IP addresses (the operator's own) in clear in free text."""
    global _operator_ips
    kept = set(_operator_ips)
    for host in hosts:
        try:
            kept.add(str(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            continue  # a host name: masking never touches names
    _operator_ips = frozenset(kept)


def _is_operator_ip(text: str) -> bool | None:
    """True for the operator's own address, False for anyone else's, None when ``text`` is not an address."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address.is_loopback or address.is_unspecified or str(address) in _operator_ips


def _mask_ipv4(match: re.Match[str]) -> str:
    return match.group(0) if _is_operator_ip(match.group(0)) else "*.*.*.*"


def _mask_ipv6(match: re.Match[str]) -> str:
    verdict = _is_operator_ip(match.group(0))
    return "*:*:*" if verdict is False else match.group(0)


def mask_text(text: str, names: Iterable[str] = ()) -> str:
    """Mask tokens, e-mail addresses, IP addresses (other than the operator's own, see the module
    docstring), phone numbers, long digit runs (card, account numbers) and names (the patron's ``names``
    when known, else those a title or cue announces: ``worker.masking_people``) in free text."""
    if not names and _NOTHING_TO_MASK.fullmatch(text):
        return text  # most of a log line's words ("decided", "approve", rule ids): one scan, not nine
    return _mask_text(text, names)


# Lower-case letters, '-' and '_' only: no pattern below can match such text (each needs a digit, an
# upper-case letter, whitespace, '@', '+' or ':'), unless the patron's names are given.
_NOTHING_TO_MASK = re.compile(r"[a-z_-]*")


def _mask_text(text: str, names: Iterable[str]) -> str:
    text = _BEARER.sub("Bearer ***", text)
    text = _JWT.sub("***", text)
    text = mask_people(text, names)  # before the digit rules: a phone is hidden whole, not to its last 4
    text = _IPV6.sub(_mask_ipv6, text)  # first: an IPv6 address may end in an IPv4 one
    text = _IPV4.sub(_mask_ipv4, text)
    return _LONG_DIGITS.sub(lambda m: mask_value(m.group(0)), text)
