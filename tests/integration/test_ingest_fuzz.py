"""Fuzzing the door: mutations of VIP's documented examples never get a 5xx, and nothing is stored
without being recorded as valid (or conflict) or invalid (real HTTP, real Redis)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_ingest_exact import DEPOSIT_RAW, WITHDRAW_RAW, db, door, redis_url_module
from tests.integration.test_ingest_http import archived, post

pytestmark = pytest.mark.integration
__all__ = ["db", "door", "redis_url_module"]  # the module-scoped fixtures, shared

EXAMPLES = {"withdraw": WITHDRAW_RAW, "deposit": DEPOSIT_RAW}
ANSWER_STATUS = {200: {b"valid", b"conflict"}, 422: {b"invalid"}}

_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["\ud800", "\udfff", "a\udc00b", "", " ", "0", "-1", "1e999999", "10.001", "NaN", "true",
                     "9f80db7112", "7145245259", "🙂", "\x00"]),
)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                    st.floats(allow_nan=True, allow_infinity=True), _text)
_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(_text, inner, max_size=3), max_leaves=8)


@st.composite
def _structured(draw: st.DrawFn, raw: bytes) -> bytes:
    """The example with some members changed, dropped, re-cased, repeated or added."""
    body: dict[str, Any] = json.loads(raw)
    pairs = list(body.items())
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(pairs) - 1))
        key, value = pairs[i]
        op = draw(st.sampled_from(["value", "drop", "case", "repeat", "add"]))
        if op == "value":
            pairs[i] = (key, draw(_value))
        elif op == "drop" and len(pairs) > 1:
            pairs.pop(i)
        elif op == "case":
            pairs[i] = (draw(st.sampled_from([key.upper(), key.lower(), key[:1].swapcase() + key[1:]])), value)
        elif op == "repeat":
            pairs.append((draw(st.sampled_from([key, key.lower(), key.upper()])), draw(_value | st.just(value))))
        else:
            pairs.append((draw(_text), draw(_value)))
    members = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs)  # repeats survive as written
    return ("{" + members + "}").encode()


@st.composite
def _bytes(draw: st.DrawFn, raw: bytes) -> bytes:
    """The example with a slice of its bytes replaced by others (broken JSON, stray escapes, brackets)."""
    start = draw(st.integers(0, len(raw)))
    end = draw(st.integers(start, min(len(raw), start + 12)))
    junk = draw(st.one_of(st.binary(max_size=12), st.sampled_from(
        [b"\\ud800", b"\\u0000", b"[" * 3000, b"{", b'"', b"1e99999", b",,", b"\xff\xfe"])))
    return raw[:start] + junk + raw[end:]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_examples_never_get_a_5xx_nor_go_unrecorded(door: str, db: redis.Redis, data: st.DataObject) -> None:
    """Every mutated body gets 200, 400, 413 or 422; what a 200 stores is valid or conflict, what a 422
    stores is invalid with its error, and a 400 or 413 stores nothing."""
    route = data.draw(st.sampled_from(sorted(EXAMPLES)))
    body = data.draw(st.one_of(_structured(EXAMPLES[route]), _bytes(EXAMPLES[route])))
    count = len(archived(db))
    r = post(door, f"/vip/notify/{route}", body)
    assert r.status_code in (200, 400, 413, 422), (r.status_code, r.text, body[:300])
    new = archived(db)[count:]
    if r.status_code in (400, 413) or (r.status_code == 200 and r.json()["status"] == "duplicate"):
        assert new == []
        return
    [entry] = new
    assert entry[b"status"] in ANSWER_STATUS[r.status_code], (entry, body[:300])
    assert entry[b"body"] == body
    if r.status_code == 422:
        assert entry[b"error"] and r.json()["error"] == entry[b"error"].decode()
