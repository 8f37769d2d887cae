"""Exact input at the door: every kind of body the rules could not decide exactly gets a deliberate 4xx
(over real HTTP, with a real Redis behind the ingestor), and nothing is stored unrecorded."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import FIXTURES
from tests.integration.test_ingest_http import archived, make_settings, post, serving
from worker.config import RedisSettings
from worker.store import connect

pytestmark = pytest.mark.integration

EXAMPLES = Path(FIXTURES) / "vip-connect"
WITHDRAW_RAW = (EXAMPLES / "withdraw-approval-request.json").read_bytes()
DEPOSIT_RAW = (EXAMPLES / "deposit-approval-request.json").read_bytes()
WITHDRAW = json.loads(WITHDRAW_RAW)
DEPOSIT = json.loads(DEPOSIT_RAW)


def _with(**changes: object) -> bytes:
    return json.dumps({**WITHDRAW, **changes}).encode()


def _limits(**changes: object) -> bytes:
    return json.dumps({**DEPOSIT, "OperatorLimits": {**DEPOSIT["OperatorLimits"], **changes}}).encode()


def _twice(first: str, value: str) -> bytes:
    """The withdrawal example with one more member, ``"first": value`` (raw JSON), at its end."""
    return WITHDRAW_RAW.rstrip().removesuffix(b"}") + f',"{first}":{value}}}'.encode()


# kind -> (route, body, status, what the error must name)
BAD: dict[str, tuple[str, bytes, int, str]] = {
    "nested thousands of arrays deep": ("withdraw", b"[" * 5000 + b"]" * 5000, 400, "body: nests deeper"),
    "nested objects past the depth": ("withdraw", _with(x=json.loads("[" * 40 + "]" * 40)), 400, "body: nests"),
    "an unpaired UTF-16 surrogate in a value": ("withdraw", _with(firstName="\ud800"), 400, "surrogate"),
    "an unpaired UTF-16 surrogate in a key": ("withdraw", _with(**{"\udc00": 1}), 400, "surrogate"),
    "NaN as a number": ("withdraw", _twice("extra", "NaN"), 400, "NaN"),
    "a fraction of a cent": ("withdraw", _with(amount="10.005"), 422, "amount: 10.005 has a fraction of a cent"),
    "a fraction of a cent past Decimal precision": (
        "withdraw", _with(amount="1.00000000000000000000000000001"), 422, "amount: "),
    "an exponent far beyond any amount": ("withdraw", _with(amount="1e999999999"), 422, "amount: "),
    "a JSON-number exponent far beyond any amount": (
        "withdraw", WITHDRAW_RAW.replace(b'"amount":10.33', b'"amount":9e99999'), 422, "amount: "),
    "a limit with a fraction of a cent": ("deposit", _limits(MaxDeposit="99999.999"), 422,
                                          "operatorLimits.maxDeposit: "),
    "a transaction id with a hyphen": ("withdraw", _with(transactionId="9f80-db7112"), 422, "transactionId: "),
    "a transaction id too short": ("withdraw", _with(transactionId="9f80db7"), 422, "transactionId: "),
    "a transaction id too long": ("withdraw", _with(transactionId="9" * 26), 422, "transactionId: "),
    "a card number with letters": ("withdraw", _with(vipCardNumber="71452X5259"), 422, "vipCardNumber: "),
    "a routing number of 12 digits": ("withdraw", _with(bankRoutingNumber="123456789012"), 422,
                                      "bankRoutingNumber: "),
    "a phone number with separators": ("withdraw", _with(homePhoneNumber="404-555-5555"), 422,
                                       "homePhoneNumber: "),
    "a patron id past 64 characters": ("withdraw", _with(patronId="p" * 65), 422, "patronId: "),
    "the amount twice with different values": ("withdraw", _twice("amount", '"99.00"'), 422,
                                               "amount: is stated twice"),
    "the amount twice in another casing": ("withdraw", _twice("Amount", "11.33"), 422, "Amount: is stated twice"),
    "the transaction id twice in snake case": ("withdraw", _twice("transaction_id", '"other00001"'), 422,
                                               "transaction_id: is stated twice"),
}


@pytest.fixture(scope="module")
def door(redis_url_module: str) -> Iterator[str]:
    settings = make_settings(redis_url_module)  # the default body limit: 64 KiB holds thousands of brackets
    settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"max_body_bytes": 65536})})
    with serving(settings) as url:
        yield url


@pytest.fixture(scope="module")
def redis_url_module() -> Iterator[str]:
    from tests.conftest import TEST_REDIS_URL

    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {TEST_REDIS_URL}")
    client.flushdb()
    yield TEST_REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def db(redis_url_module: str) -> Iterator[redis.Redis]:
    client = connect(RedisSettings(url=redis_url_module))
    yield client
    client.close()


def _stored(db: redis.Redis) -> Callable[[], list[dict[bytes, bytes]]]:
    before = len(archived(db))
    return lambda: archived(db)[before:]


@pytest.mark.parametrize("kind", list(BAD))
def test_each_kind_of_inexact_body_gets_its_4xx_naming_the_problem(door: str, db: redis.Redis, kind: str) -> None:
    """Each kind gets its status and one line naming the field; a 422 is archived invalid, a 400 not at all,
    and neither is queued."""
    route, body, status, names = BAD[kind]
    new = _stored(db)
    queued = db.llen("vipflow")
    r = post(door, f"/vip/notify/{route}", body)
    assert (r.status_code, names in r.json()["error"]) == (status, True), r.text
    assert "\n" not in r.json()["error"] and "Traceback" not in r.text
    entries = new()
    if status == 422:
        assert [(e[b"status"], e[b"error"].decode().split(":")[0]) for e in entries] == [
            (b"invalid", r.json()["error"].split(":")[0])]
    else:
        assert entries == []
    assert db.llen("vipflow") == queued


@pytest.mark.parametrize(("route", "raw"), [("withdraw", WITHDRAW_RAW), ("deposit", DEPOSIT_RAW)])
def test_the_documented_examples_are_accepted_exactly(door: str, db: redis.Redis, route: str, raw: bytes) -> None:
    """VIP's documented withdrawal and deposit bodies, byte for byte, are accepted and queued."""
    r = post(door, f"/vip/notify/{route}", raw)
    assert r.status_code == 200 and r.json()["status"] in ("accepted", "duplicate")


def test_the_same_value_stated_twice_is_accepted(door: str, db: redis.Redis) -> None:
    """A field repeated with the same value (here the amount, 10.33 and 10.330) is not a conflict."""
    r = post(door, "/vip/notify/withdraw", _twice("Amount", "10.330").replace(b"9f80db7112", b"sameval0001"))
    assert r.status_code == 200, r.text


def test_a_uuid_patron_id_is_accepted_as_given(door: str, db: redis.Redis) -> None:
    """Patron ids are the operator's own: a UUID with hyphens (as VIP's sample apps use) is accepted."""
    body = _with(transactionId="uuidpatron01", patronId="3f2b8c1e-9a4d-4c6b-8e2f-1a2b3c4d5e6f")
    assert post(door, "/vip/notify/withdraw", body).status_code == 200
