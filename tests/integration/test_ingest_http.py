"""The ingestor over real HTTP (uvicorn on a free port) with a real Redis behind it."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import jwt
import pytest
import redis
import uvicorn

from producers.ingest.app import create_app
from worker.config import IngestAuthSettings, IngestSettings, RedisSettings, Settings, VipSettings
from worker.store import Archive, CeleryPublisher, Publisher, connect
from worker.tokens import mint

pytestmark = pytest.mark.integration

KEY = b"test-secret-key-0123456789abcdef"
LIMIT = 2048
DEPOSIT = {
    "PatronId": "1234567890", "TransactionId": "jason080220231", "Amount": "89.76",
    "VipCardNumber": "7210642759", "TransactionType": "deposit", "Timestamp": "",
    "InstantPaymentEligible": "true", "ProductType": "Preferred",
    "OperatorLimits": {"MinDeposit": 10.00, "MaxDeposit": 99999.99},
}
WITHDRAW = {
    "transactionId": "9f80db7112", "amount": 10.33, "vipCardNumber": "7145245259",
    "transactionType": "withdraw", "fundTransferType": "ACH", "productType": "preferred",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(redis_url: str, **auth: object) -> Settings:
    return Settings(
        redis=RedisSettings(url=redis_url),
        vip=VipSettings(secret_key1=base64.b64encode(KEY).decode()),
        ingest=IngestSettings(max_body_bytes=LIMIT, auth=IngestAuthSettings(**auth)),
    )


@contextmanager
def serving(settings: Settings, publisher: Publisher | None = None) -> Iterator[str]:
    """Run the ingestor under a real uvicorn in a thread; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(settings, publisher=publisher), host="127.0.0.1", port=port,
                            access_log=False, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return make_settings(redis_url)


@pytest.fixture
def base(settings: Settings) -> Iterator[str]:
    with serving(settings) as url:
        yield url


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(RedisSettings(url=redis_url))
    yield client
    client.close()


def auth(token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or mint(KEY, '', 'vip-api', 600)}"}


def post(base: str, path: str, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(base + path, content=content, headers=auth() if headers is None else headers)


def archived(db: redis.Redis) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in db.xrange("vipflow:archive")]


def test_deposit_pascal_case_with_string_numbers_is_accepted_archived_and_queued(
    base: str, db: redis.Redis
) -> None:
    """A PascalCase deposit with string numbers gets 200, one archive entry and one task message."""
    r = post(base, "/vip/notify/deposit", DEPOSIT)
    assert (r.status_code, r.json()) == (200, {"status": "accepted", "transactionId": "jason080220231"})
    [entry] = archived(db)
    assert (entry[b"status"], entry[b"kind"]) == (b"valid", b"deposit")
    assert json.loads(entry[b"body"]) == DEPOSIT
    assert db.llen("vipflow") == 1


def test_withdraw_camel_case_with_json_numbers_is_accepted_and_queued(base: str, db: redis.Redis) -> None:
    """A camelCase withdraw with JSON numbers gets 200 and one task message."""
    r = post(base, "/vip/notify/withdraw", WITHDRAW)
    assert r.json()["status"] == "accepted"
    assert db.llen("vipflow") == 1


def test_archive_keeps_the_body_byte_for_byte(base: str, db: redis.Redis) -> None:
    """The archived body is exactly the bytes posted, spacing included."""
    raw = b'{ "TransactionId":"abcdefgh12",\n "Amount": 10.50, "VipCardNumber":"7210642759" }'
    post(base, "/vip/notify/deposit", raw)
    assert archived(db)[0][b"body"] == raw


def test_duplicate_gets_200_and_no_second_message(base: str, db: redis.Redis) -> None:
    """The same deposit twice answers duplicate and leaves one archive entry and one message."""
    post(base, "/vip/notify/deposit", DEPOSIT)
    r = post(base, "/vip/notify/deposit", DEPOSIT)
    assert (r.status_code, r.json()["status"]) == (200, "duplicate")
    assert len(archived(db)) == 1 and db.llen("vipflow") == 1


def test_conflict_is_archived_and_queued(base: str, db: redis.Redis) -> None:
    """Another body under the same transaction id is archived as conflict and queued."""
    post(base, "/vip/notify/deposit", DEPOSIT)
    r = post(base, "/vip/notify/deposit", {**DEPOSIT, "Amount": "999.00"})
    assert (r.status_code, r.json()["status"]) == (200, "conflict")
    assert [e[b"status"] for e in archived(db)] == [b"valid", b"conflict"]
    assert db.llen("vipflow") == 2


def test_invalid_body_gets_422_naming_the_field_and_is_archived_invalid(
    base: str, db: redis.Redis
) -> None:
    """A deposit without an amount gets 422 naming 'amount', is archived invalid, not queued."""
    body = {k: v for k, v in DEPOSIT.items() if k != "Amount"}
    r = post(base, "/vip/notify/deposit", body)
    assert r.status_code == 422 and r.json()["error"].startswith("amount:")
    [entry] = archived(db)
    assert entry[b"status"] == b"invalid" and entry[b"error"].startswith(b"amount:")
    assert entry[b"transaction_id"] == b"jason080220231"
    assert db.llen("vipflow") == 0


def test_non_json_gets_400_and_is_not_archived(base: str, db: redis.Redis) -> None:
    """A body that is not JSON gets 400 and nothing is stored."""
    r = post(base, "/vip/notify/deposit", b"<xml/>")
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    assert archived(db) == [] and db.llen("vipflow") == 0


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    return {"iss": "", "aud": "vip-api", "iat": now, "nbf": now, "exp": now + 600, **over}


BAD_TOKENS = {
    "bad signature": lambda: jwt.encode(_claims(), b"another-key-0123456789abcdef0123", "HS256"),
    "expired": lambda: jwt.encode(_claims(exp=int(time.time()) - 3600), KEY, "HS256"),
    "wrong audience": lambda: jwt.encode(_claims(aud="someone-else"), KEY, "HS256"),
    "alg none": lambda: jwt.encode(_claims(), None, "none"),
    "lifetime over the maximum (exp - iat)": lambda: jwt.encode(_claims(exp=int(time.time()) + 7200), KEY, "HS256"),
    "lifetime over the maximum (exp - nbf, no iat)": lambda: jwt.encode(
        {k: v for k, v in _claims(exp=int(time.time()) + 3700).items() if k != "iat"}, KEY, "HS256"),
    "neither iat nor nbf": lambda: jwt.encode(
        {k: v for k, v in _claims().items() if k not in ("iat", "nbf")}, KEY, "HS256"),
}

# The vendor's sample token generators (API-NOTES.md "Patron sessions"): both must be accepted.
VENDOR_SHAPES = {
    "iOS: iat, nbf five minutes back, exp in 20 minutes": lambda now: {
        "iss": "", "aud": "vip-api", "iat": now, "nbf": now - 300, "exp": now + 1200},
    "Android: no iat, nbf five seconds ahead, exp in 2000 s": lambda now: {
        "iss": "", "aud": "vip-api", "nbf": now + 5, "exp": now + 2000},
}


@pytest.mark.parametrize("shape", sorted(VENDOR_SHAPES))
def test_the_vendor_sample_token_shapes_are_accepted(base: str, db: redis.Redis, shape: str) -> None:
    """Both of VIP's sample token shapes (with iat; without iat, nbf ahead) get 200."""
    token = jwt.encode(VENDOR_SHAPES[shape](int(time.time())), KEY, "HS256")
    r = post(base, "/vip/notify/deposit", DEPOSIT, auth(token))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_token_gets_401_and_nothing_is_stored(base: str, db: redis.Redis, case: str) -> None:
    """A token with a bad signature, expired, for another audience or unsigned gets 401, unstored."""
    r = post(base, "/vip/notify/deposit", DEPOSIT, auth(BAD_TOKENS[case]()))
    assert r.status_code == 401 and r.json()["error"]
    assert archived(db) == [] and db.llen("vipflow") == 0


def test_missing_token_gets_401_and_nothing_is_stored(base: str, db: redis.Redis) -> None:
    """A request without an Authorization header gets 401 and nothing is stored."""
    r = post(base, "/vip/notify/deposit", DEPOSIT, headers={})
    assert r.status_code == 401 and "missing" in r.json()["error"]
    assert archived(db) == []


def test_callback_key_is_accepted(redis_url: str, db: redis.Redis) -> None:
    """A token signed with the configured callback key (and its issuer) is accepted."""
    callback = b"callback-key-for-vip-0123456789a"
    settings = make_settings(redis_url, callback_key=base64.b64encode(callback).decode(), issuer="vip")
    with serving(settings) as base:
        r = post(base, "/vip/notify/deposit", DEPOSIT, auth(mint(callback, "vip", "vip-api", 600)))
    assert r.status_code == 200


def test_mode_none_accepts_without_a_token(redis_url: str, db: redis.Redis) -> None:
    """With auth mode none (and allow_unauthenticated) a request without a token is accepted."""
    with serving(make_settings(redis_url, mode="none", allow_unauthenticated=True)) as base:
        r = post(base, "/vip/notify/deposit", DEPOSIT, headers={})
    assert r.status_code == 200


def test_oversized_content_length_gets_413(base: str, db: redis.Redis) -> None:
    """A body declared larger than max_body_bytes gets 413 and nothing is stored."""
    r = post(base, "/vip/notify/deposit", {**DEPOSIT, "Pad": "x" * LIMIT})
    assert r.status_code == 413
    assert archived(db) == []


def test_oversized_chunked_body_gets_413(base: str, db: redis.Redis) -> None:
    """A chunked body (no Content-Length) that grows past max_body_bytes gets 413."""
    def chunks() -> Iterator[bytes]:
        yield b'{"TransactionId": "jason080220231", "Pad": "'
        for _ in range(LIMIT // 256 + 2):
            yield b"x" * 256
        yield b'"}'

    r = httpx.post(base + "/vip/notify/deposit", content=chunks(), headers=auth())
    assert r.status_code == 413
    assert archived(db) == []


def test_redis_down_gets_503(db: redis.Redis) -> None:
    """With nothing listening at the Redis URL, a valid notification gets 503."""
    with serving(make_settings(f"redis://127.0.0.1:{free_port()}/0")) as base:
        r = post(base, "/vip/notify/deposit", DEPOSIT)
    assert r.status_code == 503 and "retry" in r.json()["error"]


def _responses(base: str, route: str, code: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(base + "/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "vipflow_ingest_responses_total" and s.labels == {"route": route, "code": code})


def test_every_answer_is_counted_by_route_and_code_5xx_included() -> None:
    """vipflow_ingest_responses_total counts the 503s of a Redis that is down (what the 5xx alert reads),
    and an unknown path only as route "other"."""
    with serving(make_settings(f"redis://127.0.0.1:{free_port()}/0")) as base:
        before = _responses(base, "deposit", "503")
        assert post(base, "/vip/notify/deposit", DEPOSIT).status_code == 503
        assert post(base, "/vip/notify/deposit", DEPOSIT).status_code == 503
        assert httpx.get(base + "/no/such/TX123").status_code == 404
        assert _responses(base, "deposit", "503") == before + 2
        assert _responses(base, "other", "404") >= 1
        assert "TX123" not in httpx.get(base + "/metrics").text


def test_readyz_is_503_when_redis_is_unreachable() -> None:
    """/readyz answers 503 when Redis cannot be reached, while /healthz still answers 200."""
    with serving(make_settings(f"redis://127.0.0.1:{free_port()}/0")) as base:
        assert httpx.get(base + "/readyz").status_code == 503
        assert httpx.get(base + "/healthz").status_code == 200


def test_readyz_is_200_when_redis_is_reachable(base: str) -> None:
    """/readyz answers 200 when Redis answers."""
    assert httpx.get(base + "/readyz").status_code == 200


def test_metrics_count_results_by_route(base: str) -> None:
    """/metrics exposes the received counter labelled by route and result, without ids."""
    post(base, "/vip/notify/withdraw", WITHDRAW)
    text = httpx.get(base + "/metrics").text
    assert 'vipflow_notifications_received_total{result="accepted",route="withdraw"}' in text
    assert "9f80db7112" not in text


def test_archive_by_transaction_finds_what_the_ingestor_stored(base: str, db: redis.Redis) -> None:
    """Entries the ingestor archived are found by transaction id through Archive."""
    post(base, "/vip/notify/deposit", DEPOSIT)
    [entry] = Archive(db, "vipflow").by_transaction("jason080220231")
    assert entry.kind == "deposit" and entry.status == "valid"


def test_with_a_celery_publisher_a_deposit_is_queued_once(redis_url: str, db: redis.Redis) -> None:
    """Given CeleryPublisher, the ingestor queues through Celery: 200, then duplicate, one message."""
    settings = make_settings(redis_url)
    with serving(settings, CeleryPublisher.from_settings(settings)) as base:
        assert post(base, "/vip/notify/deposit", DEPOSIT).json()["status"] == "accepted"
        assert post(base, "/vip/notify/deposit", DEPOSIT).json()["status"] == "duplicate"
    assert db.llen("vipflow") == 1
