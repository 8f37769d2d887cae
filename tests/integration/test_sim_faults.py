"""The simulator's run-time faults, latency and reset, seen over HTTP."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests

from producers.sim.server import SimProcess
from tests.integration.harness import simulator
from worker.config import VipSettings
from worker.errors import VipRejectedError, VipTransientError
from worker.vip.client import VipClient

pytestmark = pytest.mark.integration

KEY = base64.b64encode(os.urandom(32)).decode()
OPERATOR = "operator-faults"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    """A simulator started with a 500 error rate of 0 and scripted faults posted per test."""
    yield from simulator(KEY, OPERATOR)


@pytest.fixture
def client(sim: SimProcess) -> VipClient:
    """A client of a freshly reset simulator."""
    sim.reset()
    return VipClient(VipSettings(base_url=sim.vip_url, operator_id=OPERATOR, secret_key1=KEY, timeout_s=2))


def _body(txid: str) -> dict[str, object]:
    return {"transactionId": txid, "amount": Decimal("10.00"), "transactionType": "deposit"}


def test_error_rate_one_fails_every_call_without_recording(sim: SimProcess, client: VipClient) -> None:
    """With error_rate 1 every approval is a 500 and none is recorded."""
    sim.faults({"error_rate": 1})
    for i in range(3):
        with pytest.raises(VipTransientError):
            client.approve("deposit", _body(f"faults-err-{i:03d}"))
    assert sim.stats()["approvals"] == {}


def test_reset_restores_start_faults(sim: SimProcess, client: VipClient) -> None:
    """After reset the posted faults are gone and approvals succeed again."""
    sim.faults({"error_rate": 1})
    sim.reset()
    assert client.approve("deposit", _body("faultsreset01")).transaction_result == "Success"


def test_scripted_responses_are_consumed_in_order(sim: SimProcess, client: VipClient) -> None:
    """A script of 503 then 422 answers those in order, then the approval succeeds."""
    sim.faults({"transaction_id": "faultsscript1", "endpoint": "approve", "responses": [503, 422]})
    with pytest.raises(VipTransientError):
        client.approve("deposit", _body("faultsscript1"))
    with pytest.raises(VipRejectedError) as info:
        client.approve("deposit", _body("faultsscript1"))
    assert info.value.status == 422 and "errorCode 99" in str(info.value)
    assert client.approve("deposit", _body("faultsscript1")).transaction_result == "Success"


def test_bad_faults_document_is_400(sim: SimProcess) -> None:
    """An out-of-range error rate is refused with 400."""
    resp = requests.post(f"{sim.vip_url}/sim/faults", json={"error_rate": 2}, timeout=5)
    assert resp.status_code == 400


def test_latency_does_not_serialise_requests(sim: SimProcess, client: VipClient) -> None:
    """With 200 ms latency, 20 concurrent approvals finish in well under 20 x 200 ms."""
    sim.faults({"latency_ms": 200})
    start = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: client.approve("deposit", _body(f"faults-lat-{i:03d}")), range(20)))
    elapsed = time.monotonic() - start
    assert all(r.transaction_result == "Success" for r in results)
    assert 0.2 <= elapsed < 1.5
