"""The VipApi contract, run against FakeVip and against VipClient talking to the simulator over HTTP."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import requests

from producers.sim import patrons
from producers.sim.server import SimProcess
from tests.integration.harness import simulator
from worker.config import VipSettings
from worker.errors import ConfigError, VipRejectedError, VipTransientError
from worker.vip.approve import approve_with_reconciliation
from worker.vip.client import VipClient
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry
from worker.vip.protocol import VipApi

pytestmark = pytest.mark.integration

KEY = base64.b64encode(os.urandom(32)).decode()
OPERATOR = "operator-contract"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    """One simulator process for the module; faults make lost answers hang 1.5 s."""
    yield from simulator(KEY, OPERATOR)


def vip_settings(base_url: str, **kw: Any) -> VipSettings:
    """Settings for a client of the simulator (short timeout so lost answers are quick)."""
    return VipSettings(base_url=base_url, operator_id=OPERATOR, secret_key1=KEY, timeout_s=0.5, **kw)


@dataclass
class Harness:
    """An implementation under test plus the means to inject faults and count approvals."""

    api: VipApi
    inject: Callable[[str, list[Any]], None]
    approvals: Callable[[str], int]


def _fake_harness() -> Harness:
    fake = FakeVip(
        {
            p.vip_card_number: AccountInquiry.from_response({k: v for k, v in patrons.inquiry_response(p).items()})
            for p in patrons.PATRONS
        }
    )

    def inject(txid: str, responses: list[Any]) -> None:
        fake.fail_next_approvals(*[(r["status"], r["body"]) if isinstance(r, dict) else r for r in responses])

    return Harness(fake, inject, lambda txid: fake.approvals[txid])


def _http_harness(sim: SimProcess) -> Harness:
    sim.reset()
    sim.faults({"hang_ms": 1500})

    def inject(txid: str, responses: list[Any]) -> None:
        sim.faults({"transaction_id": txid, "endpoint": "approve", "responses": responses})

    return Harness(
        VipClient(vip_settings(sim.vip_url)), inject, lambda txid: int(sim.stats()["approvals"].get(txid, 0))
    )


@pytest.fixture(params=["fake", "http"])
def vip(request: pytest.FixtureRequest) -> Harness:
    """The contract's subject: FakeVip, or VipClient against the simulator."""
    if request.param == "fake":
        return _fake_harness()
    sim_proc: SimProcess = request.getfixturevalue("sim")
    return _http_harness(sim_proc)


def _body(txid: str, amount: str = "25.50") -> dict[str, Any]:
    return {
        "transactionId": txid,
        "amount": Decimal(amount),
        "transactionType": "withdraw",
        "vipCardNumber": patrons.PREFERRED_GOOD.vip_card_number,
        "fundTransferType": "ACH",
    }


def test_preferred_account_in_good_standing(vip: Harness) -> None:
    """The seeded VIP Preferred patron is found, in good standing, with 4500 available."""
    inq = vip.api.account_inquiry(patrons.PREFERRED_GOOD.vip_card_number, "preferred")
    assert inq.found and inq.is_in_good_standing is True
    assert inq.available_amount == Decimal("4500.0")


def test_online_account_has_bank_level_amounts(vip: Harness) -> None:
    """The VIP Online patron's amounts and instant-payment eligibility are per bank account."""
    inq = vip.api.account_inquiry(patrons.ONLINE.vip_card_number, "online")
    assert inq.available_amount is None
    eligible = [(b.available_amount, b.instant_payment_eligible) for b in inq.bank_accounts]
    assert eligible == [(Decimal("348.31"), True), (Decimal("4500.00"), False)]


def test_unknown_card_is_not_found(vip: Harness) -> None:
    """An unknown card gives found=False rather than an error."""
    assert vip.api.account_inquiry(patrons.UNKNOWN_CARD, None).found is False


def test_approval_is_recorded_and_looked_up(vip: Harness) -> None:
    """A successful approval is counted once and the lookup then says approval completed."""
    result = vip.api.approve("withdraw", _body("contract-ok-01"))
    assert result.transaction_result == "Success"
    assert vip.approvals("contract-ok-01") == 1
    status = vip.api.lookup_transaction("contract-ok-01")
    assert status is not None and status.approval_completed is True and status.approved


def test_lookup_of_unknown_transaction_is_none(vip: Harness) -> None:
    """The lookup of a transaction never seen answers None."""
    assert vip.api.lookup_transaction("never-seen-001") is None


def test_4xx_raises_rejected_with_error_body(vip: Harness) -> None:
    """A scripted 400 raises VipRejectedError carrying VIP's errorCode, and the lookup says FAILED."""
    body = {
        "errorCode": 13,
        "transactionStage": "Approval",
        "operatorErrorMessage": "Closed account",
        "operatorDeclineDescription": "Closed",
        "patronErrorMessage": "x",
        "resolution": "y",
    }
    vip.inject("contract-4xx-01", [{"status": 400, "body": body}])
    with pytest.raises(VipRejectedError) as info:
        vip.api.approve("withdraw", _body("contract-4xx-01"))
    assert info.value.status == 400
    assert isinstance(info.value.body, dict) and info.value.body["errorCode"] == 13
    status = vip.api.lookup_transaction("contract-4xx-01")
    assert status is not None and status.transaction_status == "FAILED" and not status.approved


def test_5xx_raises_transient_maybe_sent(vip: Harness) -> None:
    """A 500 raises VipTransientError that may have been sent, and records no approval."""
    vip.inject("contract-500-01", [500])
    with pytest.raises(VipTransientError) as info:
        vip.api.approve("withdraw", _body("contract-500-01"))
    assert info.value.maybe_sent is True
    assert vip.approvals("contract-500-01") == 0


def test_commit_then_timeout_is_visible_to_lookup(vip: Harness) -> None:
    """A lost answer after commit raises VipTransientError while the lookup shows it approved."""
    vip.inject("contract-lost-01", ["commit_then_timeout"])
    with pytest.raises(VipTransientError):
        vip.api.approve("withdraw", _body("contract-lost-01"))
    status = vip.api.lookup_transaction("contract-lost-01")
    assert status is not None and status.approved


def test_bad_transaction_id_is_rejected(vip: Harness) -> None:
    """A transactionId shorter than 8 characters is refused with a 400."""
    with pytest.raises(VipRejectedError) as info:
        vip.api.approve("withdraw", _body("short"))
    assert info.value.status == 400


def test_reconciled_approval_after_two_500s_and_lost_answer(vip: Harness) -> None:
    """500, 500, then a lost answer after commit ends already_approved with exactly one approval."""
    vip.inject("contract-rec-01", [500, 500, "commit_then_timeout"])
    outcome = approve_with_reconciliation(
        vip.api, "withdraw", _body("contract-rec-01"), max_attempts=5, backoff_base_s=0.01, backoff_max_s=0.02
    )
    assert outcome.status == "already_approved"
    assert vip.approvals("contract-rec-01") == 1


def test_client_keeps_decimal_amount_exact(sim: SimProcess) -> None:
    """A Decimal amount reaches VIP without float rounding."""
    sim.reset()
    client = VipClient(vip_settings(sim.vip_url))
    result = client.approve("withdraw", _body("contract-dec-01", "12345678901234567.89"))
    assert result.raw["amount"] == "12345678901234567.89"


def test_refused_connection_was_certainly_not_sent() -> None:
    """A refused connection raises VipTransientError with maybe_sent False."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = VipClient(vip_settings(f"http://127.0.0.1:{port}"))
    with pytest.raises(VipTransientError) as info:
        client.approve("withdraw", _body("contract-ref-01"))
    assert info.value.maybe_sent is False


def test_read_timeout_may_have_been_sent(sim: SimProcess) -> None:
    """A timeout waiting for the answer raises VipTransientError with maybe_sent True."""
    sim.reset()
    sim.faults({"hang_ms": 1500, "transaction_id": "contractto01", "endpoint": "approve", "responses": ["timeout"]})
    with pytest.raises(VipTransientError) as info:
        VipClient(vip_settings(sim.vip_url)).approve("withdraw", _body("contractto01"))
    assert info.value.maybe_sent is True and "may have reached" in str(info.value)


def test_wrong_key_gets_rejected_as_401(sim: SimProcess) -> None:
    """A client signing with a key the simulator does not know is refused, the message naming the keys."""
    other = base64.b64encode(os.urandom(32)).decode()
    client = VipClient(VipSettings(base_url=sim.vip_url, operator_id=OPERATOR, secret_key1=other))
    with pytest.raises(VipRejectedError) as info:
        client.lookup_transaction("contract-key-01")
    assert info.value.status == 401 and "secret keys" in str(info.value)
    assert other not in str(info.value)


@pytest.mark.parametrize(
    ("kw", "key"), [({"secret_key1": None}, "vip.secret_key1"), ({"operator_id": ""}, "vip.operator_id")]
)
def test_missing_credentials_are_config_errors(kw: dict[str, Any], key: str) -> None:
    """A client without a secret key or operator id refuses to start, naming the key."""
    settings = VipSettings(**{"operator_id": OPERATOR, "secret_key1": KEY, **kw})
    with pytest.raises(ConfigError) as info:
        VipClient(settings)
    assert info.value.key == key


def test_sim_stats_counts_calls(sim: SimProcess) -> None:
    """The simulator's stats count calls per endpoint."""
    sim.reset()
    VipClient(vip_settings(sim.vip_url)).lookup_transaction("contract-stat-1")
    stats = requests.get(f"{sim.vip_url}/sim/stats", timeout=5).json()
    assert stats["calls"] == {"transaction_lookup": 1}
