"""People in free text: e-mail addresses, phone numbers written with separators, and names.

VIP Connect's error fields (``operatorErrorMessage``, ``patronErrorMessage``,
``resolution``, ``errorMessage``, ...) and the wallet's messages are free text
that may name the patron. ``worker.masking.mask_text`` runs these patterns after
its own (tokens, IP addresses, long digit runs).

How a name is recognised, and why ordinary words stay readable:

- **Names the notification gave.** The patron's ``firstName``/``lastName`` (any
  key casing) from the transaction's own notifications are masked wherever they
  appear as whole words, in any letter case (:func:`names_in` collects them;
  ``vipflow tx show`` and ``review show`` pass them). A name that is also an
  ordinary word is masked in that transaction's text too: too much, never too little.
- **Names the text announces.** Without the notification, a capitalised word is a
  name only where the text says a person follows: after a title (Mr, Mrs, Ms,
  Miss, Mx, Dr) or after ``patron``, ``customer``, ``cardholder``, ``account
  holder``, ``payee``, ``dear``, ``attn`` or a name label (``patron name``,
  ``full name``, ``first name``, ``firstName=``, ...). Up to three such words
  are masked; a word in :data:`_NOT_NAMES` (``Customer Service``, ``Patron
  Account``) or in lower case ends the run. A capitalised word anywhere else is
  left alone: guessing names from capitals alone would hide "Bank", "Declined"
  and half of every error message, so an unannounced name of a patron the
  notification does not name stays readable (the one gap, by choice).

Transaction ids, amounts, dates and times, Redis stream ids and IP addresses
do not match the phone pattern: a phone is 3-3-4 digits (North American, with
an optional ``+1``/``1`` and parentheses) or a ``+`` country code followed by
8 to 15 digits in groups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

HIDDEN = "***"

# Local part not preceded by ':' or '/' (a URL's user, e.g. postgresql://postgres@db.example.com, is the
# operator's configuration, not a patron's address); the domain ends in letters.
_EMAIL = re.compile(r"(?<![\w.+/:%-])[\w.+%-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_NANP = re.compile(r"(?<![\w+.-])(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-]|\.\d)")
_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){2,5}(?![\w-]|\.\d)")

_WORD = r"[A-Z][A-Za-z'\u2019-]*"  # O'Brien, O\u2019Brien, Smith-Jones
_TITLE = r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Mister)\.?"
_CUE = (r"(?i:\b(?:patron|customer|cardholder|card\s+holder|account\s+holder|payee|dear|attn|attention"
        r"|(?:patron|customer|holder|full|first|last|given|family|account|payee)[ _]?name))")
_NAME_RUN = rf"((?:{_WORD})(?:[ ]{_WORD}){{0,2}})"
# Titles first: in "Dear Mrs. Smith" the cue "Dear" is followed by a title, not a name.
_TITLED = re.compile(rf"({_TITLE}\s+){_NAME_RUN}")
_ANNOUNCED = re.compile(rf"({_CUE}(?:\s*[:=]\s*|\s+)){_NAME_RUN}")

# Capitalised words that follow a cue without being a name (the vocabulary of payment error messages).
_NOT_NAMES_TEXT = """
account accounts ach approval approved amount balance bank blocked card cardholder closed connect contact
customer data declined decline denied deposit details error errors exceeded failed failure fcra found funds id
info information insufficient invalid is limit limits locked missing mr mrs ms miss mx dr mister no not nsf
number online patron payee payment payments pending preferred profile record request requested review service
services session status support team the transaction transactions unknown verification verified vip wallet was
withdraw withdrawal has had and or of for with please a an
"""
_NOT_NAMES = frozenset(_NOT_NAMES_TEXT.split())


def names_in(data: Any) -> frozenset[str]:
    """The patron's names a notification body (or any mapping, nested) gives under ``firstName`` and
    ``lastName`` (any casing); each word of two letters or more."""
    found: set[str] = set()
    if isinstance(data, Mapping):
        for key, value in data.items():
            if str(key).replace("_", "").lower() in ("firstname", "lastname") and isinstance(value, str):
                found.update(w for w in re.split(r"[\s,]+", value.strip()) if len(w) >= 2)
            elif isinstance(value, Mapping | list):
                found |= names_in(value)
    elif isinstance(data, list):
        for value in data:
            found |= names_in(value)
    return frozenset(found)


def _announced(match: re.Match[str]) -> str:
    cue, words = match.group(1), match.group(2).split(" ")
    taken = 0
    for word in words:
        if word.lower().strip("'\u2019-") in _NOT_NAMES or len(word) < 2:
            break
        if word.isupper() and not re.search(r"[:=]\s*$", cue):
            break  # an acronym after a bare cue ("patron VIP ..."); after "name:" a name may be in capitals
        taken += 1
    if taken == 0:
        return match.group(0)
    return cue + " ".join([HIDDEN, *words[taken:]])


def _intl(match: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in match.group(0))
    return HIDDEN if 8 <= digits <= 15 else match.group(0)


def mask_people(text: str, names: Iterable[str] = ()) -> str:
    """``text`` with e-mail addresses, phone numbers written with separators, the given ``names`` and
    names announced by a title or a cue (see the module docstring) replaced by ``***``."""
    text = _EMAIL.sub(HIDDEN, text)
    text = _INTL.sub(_intl, text)
    text = _NANP.sub(HIDDEN, text)
    known = sorted({n for n in names if len(n) >= 2}, key=len, reverse=True)
    if known:
        pattern = r"(?<![\w*])(?:" + "|".join(re.escape(n) for n in known) + r")(?!\w)"
        text = re.sub(pattern, HIDDEN, text, flags=re.IGNORECASE)
    return _ANNOUNCED.sub(_announced, _TITLED.sub(_announced, text))
