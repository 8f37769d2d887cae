"""The simulator verifies the operator's JWT exactly: anything but a valid token gets 401."""

from __future__ import annotations

import base64
import os
import time
import warnings
from collections.abc import Iterator

import jwt
import pytest
import requests

from producers.sim.server import SimProcess, start_simulator
from worker.tokens import mint

pytestmark = pytest.mark.integration

KEY1, KEY2 = os.urandom(32), os.urandom(32)
OPERATOR, AUDIENCE = "operator-auth", "vip-api-dev"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    """A simulator knowing both secret keys and a per-environment audience."""
    proc = start_simulator(
        {
            "VIPFLOW_VIP__SECRET_KEY1": base64.b64encode(KEY1).decode(),
            "VIPFLOW_VIP__SECRET_KEY2": base64.b64encode(KEY2).decode(),
            "VIPFLOW_VIP__OPERATOR_ID": OPERATOR,
            "VIPFLOW_VIP__AUDIENCE": AUDIENCE,
        }
    )
    try:
        yield proc
    finally:
        proc.stop()


def _lookup(sim: SimProcess, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.post(
        f"{sim.vip_url}/api/operator/Transaction",
        headers=headers,
        timeout=5,
        json={"transactionId": "authtest0001", "fullDetails": True},
    )


def test_valid_token_signed_with_key1_is_accepted(sim: SimProcess) -> None:
    """A token with the right key, issuer and audience passes (204: nothing known)."""
    assert _lookup(sim, mint(KEY1, OPERATOR, AUDIENCE, 600)).status_code == 204


def test_secret_key2_is_accepted_for_rotation(sim: SimProcess) -> None:
    """SecretKey2 is accepted as well as SecretKey1."""
    assert _lookup(sim, mint(KEY2, OPERATOR, AUDIENCE, 600)).status_code == 204


def test_missing_token_is_401(sim: SimProcess) -> None:
    """No Authorization header gets 401."""
    assert _lookup(sim, None).status_code == 401


def test_unknown_key_is_401(sim: SimProcess) -> None:
    """A token signed with another key gets 401."""
    assert _lookup(sim, mint(os.urandom(32), OPERATOR, AUDIENCE, 600)).status_code == 401


def test_expired_token_is_401(sim: SimProcess) -> None:
    """A token that expired beyond the allowed skew gets 401 saying so."""
    resp = _lookup(sim, mint(KEY1, OPERATOR, AUDIENCE, 600, now=time.time() - 3600))
    assert resp.status_code == 401 and "expired" in resp.json()["message"]


def test_wrong_audience_is_401(sim: SimProcess) -> None:
    """A token for another audience (e.g. plain vip-api) gets 401."""
    resp = _lookup(sim, mint(KEY1, OPERATOR, "vip-api", 600))
    assert resp.status_code == 401 and "audience" in resp.json()["message"]


def test_wrong_issuer_is_401(sim: SimProcess) -> None:
    """A token naming another operator gets 401."""
    assert _lookup(sim, mint(KEY1, "someone-else", AUDIENCE, 600)).status_code == 401


def test_other_algorithm_is_401(sim: SimProcess) -> None:
    """A token signed with HS512 is refused even with the right key: HS256 is pinned."""
    now = int(time.time())
    claims = {"iss": OPERATOR, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)  # short key on purpose
        token = jwt.encode(claims, KEY1, algorithm="HS512")
    assert _lookup(sim, token).status_code == 401


def test_approval_without_token_is_not_recorded(sim: SimProcess) -> None:
    """An unauthenticated approval is refused and counted nowhere as an approval."""
    resp = requests.post(
        f"{sim.vip_url}/api/operator/WithdrawApproval",
        timeout=5,
        json={"transactionId": "authtest0002", "amount": "10.00"},
    )
    assert resp.status_code == 401
    assert "authtest0002" not in sim.stats()["approvals"]
