"""VIP's own signals and transient failures, against the simulator over real HTTP: Retry-After is honoured
within vip.backoff_max_s, and the account inquiry is asked again before its facts become unknown."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis

from producers.sim import patrons
from producers.sim.server import SimProcess
from tests.integration.harness import simulator
from worker.config import VipSettings
from worker.errors import VipTransientError
from worker.store.accounts import AccountCache
from worker.vip.approve import approve_with_reconciliation
from worker.vip.client import VipClient, retry_after_s
from worker.vip.retry import RetryPolicy

pytestmark = pytest.mark.integration

KEY = base64.b64encode(os.urandom(32)).decode()
OPERATOR = "operator-signals"
CARD = patrons.PREFERRED_GOOD.vip_card_number


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    yield from simulator(KEY, OPERATOR)


@pytest.fixture
def client(sim: SimProcess) -> VipClient:
    sim.reset()
    return VipClient(VipSettings(base_url=sim.vip_url, operator_id=OPERATOR, secret_key1=KEY, timeout_s=2))


def _approve(client: VipClient, txid: str, slept: list[float], backoff_max_s: float = 30.0) -> str:
    body = {"transactionId": txid, "amount": Decimal("25.50"), "transactionType": "withdraw",
            "vipCardNumber": CARD, "fundTransferType": "ACH"}
    outcome = approve_with_reconciliation(client, "withdraw", body, max_attempts=3, backoff_base_s=0.01,
                                          backoff_max_s=backoff_max_s, sleep=slept.append)
    return outcome.status


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_waited_before_the_next_attempt(sim: SimProcess, client: VipClient, status: int) -> None:
    """A 429 or 503 with Retry-After: 7 is followed by a wait of 7 s (not the 0.01 s backoff), then success."""
    txid = f"retryafter{status}"
    sim.faults({"transaction_id": txid, "endpoint": "approve",
                "responses": [{"status": status, "headers": {"Retry-After": "7"}}]})
    slept: list[float] = []
    assert _approve(client, txid, slept) == "approved"
    assert slept == [7.0]
    assert int(sim.stats()["approvals"].get(txid, 0)) == 1


def test_retry_after_is_capped_at_backoff_max(sim: SimProcess, client: VipClient) -> None:
    """A Retry-After of an hour is honoured only up to vip.backoff_max_s."""
    sim.faults({"transaction_id": "retryafterlong", "endpoint": "approve",
                "responses": [{"status": 503, "headers": {"Retry-After": "3600"}}]})
    slept: list[float] = []
    assert _approve(client, "retryafterlong", slept, backoff_max_s=2.5) == "approved"
    assert slept == [2.5]


def test_retry_after_as_an_http_date_is_read() -> None:
    """Retry-After may be an HTTP date: read as the seconds from now; garbage is ignored."""
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None


def test_account_inquiry_is_asked_again_after_5xx(sim: SimProcess, client: VipClient, redis_url: str) -> None:
    """Two 500s then an answer: the inquiry is found on its third attempt, not left unknown."""
    sim.faults({"vip_card_number": CARD, "endpoint": "account", "responses": [500, 500]})
    cache = AccountCache(redis.Redis.from_url(redis_url), "t", 0)
    slept: list[float] = []
    inquiry = cache.resolve(None, client, CARD, "preferred", RetryPolicy(4, 0.0, 0.0, slept.append))
    assert inquiry.found and inquiry.is_in_good_standing
    assert len(slept) == 2


def test_account_inquiry_gives_up_after_its_attempts(sim: SimProcess, client: VipClient, redis_url: str) -> None:
    """Failing every attempt, the inquiry raises VipTransientError after exactly inquiry_max_attempts calls."""
    sim.faults({"vip_card_number": CARD, "endpoint": "account", "responses": [500] * 5})
    cache = AccountCache(redis.Redis.from_url(redis_url), "t", 0)
    before = int(sim.stats()["calls"].get("account_lookup", 0))
    with pytest.raises(VipTransientError):
        cache.resolve(None, client, CARD, "preferred", RetryPolicy(3, 0.0, 0.0, lambda s: None))
    assert int(sim.stats()["calls"].get("account_lookup", 0)) - before == 3


def test_with_30_percent_errors_few_inquiries_stay_unknown(sim: SimProcess, client: VipClient,
                                                          redis_url: str) -> None:
    """With 30 % of VIP calls answering 500, four attempts leave under 5 % of 200 inquiries unknown
    (one attempt left about 30 %)."""
    sim.faults({"error_rate": 0.3})
    cache = AccountCache(redis.Redis.from_url(redis_url), "t", 0)
    once = four = 0
    for _ in range(200):
        for attempts in (1, 4):
            try:
                cache.resolve(None, client, CARD, "preferred", RetryPolicy(attempts, 0.0, 0.0, lambda s: None))
            except VipTransientError:
                if attempts == 1:
                    once += 1
                else:
                    four += 1
    assert once > 30 and four < 10, (once, four)
