"""Masking of patrons' personal data and secrets before anything is logged or shown."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Folded key (lower case, no underscores) -> how to mask it.
_KEEP_LAST4 = {"vipcardnumber", "maskedbankaccountnumber", "bankroutingnumber", "vipaccountnumber",
               "maskedaccountnumber", "routingnumber", "accountnumber", "idnumber", "last4ssn",
               "patronid"}
_HIDE = {"firstname", "lastname", "name", "homephonenumber", "mobilephonenumber", "phone",
         "location", "ip", "address", "city", "zip", "email", "dateofbirth", "authorization",
         "token", "secretkey1", "secretkey2", "callbackkey", "password"}

# Identifiers and times that are not personal data, left as they are.
_PLAIN = {"timestamp", "transactionid", "notificationsenton", "approvalcalledon", "membersince",
          "lasttransaction", "receivedat", "at", "entryid", "ts", "id", "runtime"}

_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
# Seven or more digits (card, account, phone numbers), but not Redis stream ids (ms-seq).
_LONG_DIGITS = re.compile(r"\b\d{7,}\b(?!-\d)")


def _fold(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def mask_value(value: Any, keep_last: int = 4) -> str:
    """``'7210642759'`` -> ``'******2759'``; short values are hidden entirely."""
    text = str(value)
    if len(text) <= keep_last + 2:
        return "*" * len(text)
    return "*" * (len(text) - keep_last) + text[-keep_last:]


def mask_mapping(data: Any) -> Any:
    """A deep copy of ``data`` with personal data and secrets masked by key."""
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
                out[key] = mask_mapping(value)
        return out
    if isinstance(data, list):
        return [mask_mapping(v) for v in data]
    if isinstance(data, str):
        return mask_text(data)
    return data


def mask_text(text: str) -> str:
    """Mask tokens, IP addresses and long digit runs (card, account, phone numbers) in free text."""
    text = _BEARER.sub("Bearer ***", text)
    text = _JWT.sub("***", text)
    text = _IPV4.sub("*.*.*.*", text)
    return _LONG_DIGITS.sub(lambda m: mask_value(m.group(0)), text)
