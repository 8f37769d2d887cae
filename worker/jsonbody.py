"""A notification body decoded exactly: JSON that means one thing, or a NotificationError.

What ``json.loads`` would accept but vipflow cannot hold or decide exactly is refused here,
at the door, with one line naming the problem (never a traceback):

- not JSON at all, or ``NaN``/``Infinity`` (not JSON either): :class:`BodyUnreadable`;
- nested deeper than :data:`MAX_DEPTH` (a notification nests two levels; a body thousands of
  arrays deep would exhaust the parser's recursion): :class:`BodyUnreadable`;
- a string holding an unpaired UTF-16 surrogate (``"\\ud800"``), which no UTF-8 store, log
  or database can take: :class:`BodyUnreadable`;
- the same key twice in one object, in any casing (keys compare as the notification
  compares them: case, ``_`` and ``-`` ignored), with different values: :class:`DuplicateField`
  naming it. The same value stated twice is kept once.

Numbers that are not integers become ``Decimal`` (never a float).
"""

from __future__ import annotations

import functools
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from worker.errors import NotificationError

MAX_DEPTH = 32  # levels of objects/arrays; VIP's notifications use two


class BodyUnreadable(NotificationError):
    """Not a JSON document vipflow can hold exactly (the ingestor answers 400, storing nothing)."""


class DuplicateField(NotificationError):
    """One object states the same field twice with different values (the ingestor answers 422)."""


@functools.lru_cache(maxsize=4096)
def fold(key: str) -> str:
    """A key as the notification matches it: without case, underscores or hyphens (remembered: the same
    few dozen field names come in every notification; a bounded cache, whatever keys a body holds)."""
    return key.replace("_", "").replace("-", "").lower()


def _constant(name: str) -> Any:
    raise BodyUnreadable("body", f"holds {name}, which is not a JSON number")


def _same(a: Any, b: Any) -> bool:
    numbers = (int, Decimal)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if len(pairs) < 2:
        return dict(pairs)
    first_spelling: dict[str, str] = {}
    for key, value in pairs:
        folded = fold(key)
        earlier = first_spelling.get(folded)
        if earlier is None:
            first_spelling[folded] = key
            out[key] = value
        elif not _same(out[earlier], value):
            name = key[:64].encode("utf-8", "backslashreplace").decode()  # printable, whatever it holds
            raise DuplicateField(name, "is stated twice with different values; send it once")
    return out


def _check_shape(body: Any) -> None:
    """Depth and surrogates, iteratively (no recursion however the body is nested)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            items: list[Any] = [*node.keys(), *node.values()]
        elif isinstance(node, list):
            items = node
        else:
            items = [node]
            depth -= 1
        if depth > MAX_DEPTH:
            raise BodyUnreadable("body", f"nests deeper than {MAX_DEPTH} levels")
        for item in items:
            if isinstance(item, str):
                if not item.isascii():
                    try:
                        item.encode("utf-8")
                    except UnicodeEncodeError:
                        raise BodyUnreadable(
                            "body", "holds an unpaired UTF-16 surrogate (\\ud800-\\udfff); send valid Unicode"
                        ) from None
            elif isinstance(item, dict | list):
                stack.append((item, depth + 1))


# Built once: json.loads with any hook builds a new decoder (and its scanner) per call. A decoder keeps no
# state between calls, so threads share it (as json.loads shares its default one).
DECIMAL_JSON = json.JSONDecoder(parse_float=Decimal)
_BODY_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=_constant, object_pairs_hook=_object)


def loads(decoder: json.JSONDecoder, data: bytes | str) -> Any:
    """``json.loads(data, ...)`` with ``decoder``'s hooks: bytes in UTF-8, -16 or -32 as json.loads takes
    them; a str starting with a byte order mark refused as json.loads does. json.JSONDecodeError (a
    ValueError) when it is not JSON."""
    if isinstance(data, bytes | bytearray):
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    elif data.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
    return decoder.decode(data)


def decode_body(raw: bytes) -> Any:
    """The decoded body (non-integers as Decimal); BodyUnreadable or DuplicateField naming what is wrong."""
    try:
        body = loads(_BODY_JSON, raw)
    except NotificationError:
        raise
    except RecursionError:
        raise BodyUnreadable("body", f"nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, InvalidOperation):
        raise BodyUnreadable("body", "is not valid JSON") from None
    # Fast paths: with no escape there is no surrogate; with few brackets there is no depth.
    if b"\\u" in raw or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        _check_shape(body)
    return body
