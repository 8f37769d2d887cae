"""JSON as VIP Connect writes it: Decimals as exact JSON numbers, never through float."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

_NUMBER = re.compile(r'"\\u0000dec:([-0-9.Ee+]+)"')


def dumps(data: Any) -> bytes:
    """Encode ``data`` with every Decimal as an exact JSON number."""

    def mark(value: Any) -> Any:
        if isinstance(value, Decimal):
            return "\0dec:" + str(value)
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [mark(v) for v in value]
        return value

    return _NUMBER.sub(r"\1", json.dumps(mark(data))).encode()
