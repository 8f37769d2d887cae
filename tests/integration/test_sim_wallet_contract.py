"""The Wallet contract, run against InMemoryWallet and HttpWallet talking to the simulated wallet."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests

from producers.sim.patrons import LOW, PREFERRED_GOOD
from producers.sim.server import SimProcess, start_simulator
from worker.config import WalletSettings
from worker.errors import WalletError, WalletRefusedError, WalletTransientError
from worker.wallet.fake import InMemoryWallet
from worker.wallet.http import HttpWallet
from worker.wallet.protocol import Wallet

pytestmark = pytest.mark.integration

TOKEN = "wallet-test-token"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    """A simulator whose wallet demands a bearer token."""
    proc = start_simulator(
        {
            "VIPFLOW_VIP__SECRET_KEY1": base64.b64encode(os.urandom(32)).decode(),
            "VIPFLOW_VIP__OPERATOR_ID": "operator-wallet",
            "VIPFLOW_WALLET__TOKEN": TOKEN,
        }
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(params=["memory", "http"])
def wallet(request: pytest.FixtureRequest) -> Wallet:
    """The contract's subject, seeded with the simulator's patrons."""
    if request.param == "memory":
        return InMemoryWallet(
            {PREFERRED_GOOD.patron_id: PREFERRED_GOOD.wallet_balance, LOW.patron_id: LOW.wallet_balance}
        )
    sim_proc: SimProcess = request.getfixturevalue("sim")
    sim_proc.reset()
    return HttpWallet(WalletSettings(url=sim_proc.wallet_url, token=TOKEN, timeout_s=2))


def test_balance_of_seeded_patron(wallet: Wallet) -> None:
    """The seeded patron's balance comes back exactly."""
    assert wallet.balance(PREFERRED_GOOD.patron_id) == Decimal("10000.00")


def test_balance_of_unknown_patron_is_none(wallet: Wallet) -> None:
    """An unknown patron has no balance (None), not an error."""
    assert wallet.balance("no-such-patron") is None


def test_hold_is_idempotent_by_key(wallet: Wallet) -> None:
    """The same key twice holds once: the balance drops by the amount only once."""
    first = wallet.hold("tx-hold-0001", PREFERRED_GOOD.patron_id, Decimal("100.25"))
    again = wallet.hold("tx-hold-0001", PREFERRED_GOOD.patron_id, Decimal("100.25"))
    assert first == again and first.status == "held"
    assert wallet.balance(PREFERRED_GOOD.patron_id) == Decimal("9899.75")


def test_insufficient_funds_is_refused(wallet: Wallet) -> None:
    """A hold above the balance is refused with reason insufficient_funds."""
    with pytest.raises(WalletRefusedError) as info:
        wallet.hold("tx-hold-0002", LOW.patron_id, Decimal("20.01"))
    assert info.value.reason == "insufficient_funds"


def test_unknown_patron_hold_is_refused(wallet: Wallet) -> None:
    """A hold for an unknown patron is refused with reason unknown_patron."""
    with pytest.raises(WalletRefusedError) as info:
        wallet.hold("tx-hold-0003", "no-such-patron", Decimal("1"))
    assert info.value.reason == "unknown_patron"


def test_key_reused_for_other_amount_is_refused(wallet: Wallet) -> None:
    """Reusing a key for a different amount is a key_conflict, not a second hold."""
    wallet.hold("tx-hold-0004", PREFERRED_GOOD.patron_id, Decimal("5"))
    with pytest.raises(WalletRefusedError) as info:
        wallet.hold("tx-hold-0004", PREFERRED_GOOD.patron_id, Decimal("6"))
    assert info.value.reason == "key_conflict"


def test_release_is_idempotent_and_restores_funds(wallet: Wallet) -> None:
    """Releasing twice is True both times and the funds are available again."""
    wallet.hold("tx-hold-0005", PREFERRED_GOOD.patron_id, Decimal("50"))
    assert wallet.release("tx-hold-0005") is True
    assert wallet.release("tx-hold-0005") is True
    assert wallet.balance(PREFERRED_GOOD.patron_id) == Decimal("10000.00")


def test_release_of_unknown_hold_is_false(wallet: Wallet) -> None:
    """Releasing a hold that never existed answers False."""
    assert wallet.release("tx-hold-none") is False


def test_sim_counts_one_freeze_per_key(sim: SimProcess) -> None:
    """Three PUTs of one key freeze once; the wallet's stats say so."""
    sim.reset()
    wallet = HttpWallet(WalletSettings(url=sim.wallet_url, token=TOKEN))
    for _ in range(3):
        wallet.hold("tx-hold-0006", PREFERRED_GOOD.patron_id, Decimal("1.00"))
    stats = requests.get(f"{sim.wallet_url}/sim/stats", timeout=5).json()
    assert stats["holds"] == {"tx-hold-0006": 1} and stats["hold_requests"] == {"tx-hold-0006": 3}


def test_wrong_token_is_a_wallet_error(sim: SimProcess) -> None:
    """A wrong wallet token is refused, the message pointing at wallet.token without showing it."""
    wallet = HttpWallet(WalletSettings(url=sim.wallet_url, token="not-the-token"))
    with pytest.raises(WalletError) as info:
        wallet.balance(PREFERRED_GOOD.patron_id)
    assert "wallet.token" in str(info.value) and "not-the-token" not in str(info.value)


def test_a_wallet_down_answers_503_which_is_transient(sim: SimProcess) -> None:
    """The simulator's wallet fault {"down": true} answers 503 (transient for HttpWallet, nothing frozen)
    until {"down": false}; a bad fault document gets 400."""
    sim.reset()
    wallet = HttpWallet(WalletSettings(url=sim.wallet_url, token=TOKEN))
    assert requests.post(f"{sim.wallet_url}/sim/faults", json={"down": "yes"}, timeout=5).status_code == 400
    requests.post(f"{sim.wallet_url}/sim/faults", json={"down": True}, timeout=5).raise_for_status()
    try:
        with pytest.raises(WalletTransientError):
            wallet.hold("tx-down-0001", PREFERRED_GOOD.patron_id, Decimal("1.00"))
    finally:
        requests.post(f"{sim.wallet_url}/sim/faults", json={"down": False}, timeout=5).raise_for_status()
    wallet.hold("tx-down-0001", PREFERRED_GOOD.patron_id, Decimal("1.00"))
    assert requests.get(f"{sim.wallet_url}/sim/stats", timeout=5).json()["holds"] == {"tx-down-0001": 1}


def test_unreachable_wallet_is_transient() -> None:
    """A wallet that refuses connections raises WalletTransientError."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WalletTransientError):
        HttpWallet(WalletSettings(url=f"http://127.0.0.1:{port}")).balance("x")


# The hold's whole life (issue 12): capture, release, reverse; and credits.


def test_capture_takes_the_held_amount_once(wallet: Wallet) -> None:
    """A captured hold leaves the balance lower by its amount, once, however often it is captured."""
    wallet.hold("wcap00001", PREFERRED_GOOD.patron_id, Decimal("100.00"))
    first = wallet.capture("wcap00001")
    again = wallet.capture("wcap00001")
    assert first.status == again.status == "captured" and first.amount == Decimal("100.00")
    assert wallet.balance(PREFERRED_GOOD.patron_id) == Decimal("9900.00")


def test_captured_hold_cannot_be_released_only_reversed(wallet: Wallet) -> None:
    """Releasing money already paid out is refused; a reversal gives it back, once."""
    wallet.hold("wcap00002", PREFERRED_GOOD.patron_id, Decimal("40.00"))
    wallet.capture("wcap00002")
    with pytest.raises(WalletRefusedError) as refused:
        wallet.release("wcap00002")
    assert refused.value.reason == "wrong_state"
    assert wallet.reverse("wcap00002").status == "reversed"
    assert wallet.reverse("wcap00002").status == "reversed"
    assert wallet.balance(PREFERRED_GOOD.patron_id) == Decimal("10000.00")


def test_released_hold_cannot_be_captured(wallet: Wallet) -> None:
    """A hold released (rejected, expired) is never paid out afterwards."""
    wallet.hold("wcap00003", PREFERRED_GOOD.patron_id, Decimal("25.00"))
    assert wallet.release("wcap00003") is True
    with pytest.raises(WalletRefusedError) as refused:
        wallet.capture("wcap00003")
    assert refused.value.reason == "wrong_state"
    assert wallet.balance(PREFERRED_GOOD.patron_id) == Decimal("10000.00")


def test_capture_or_reverse_of_unknown_hold_is_refused(wallet: Wallet) -> None:
    """No such hold: refused with its own reason, nothing moves."""
    for step in (wallet.capture, wallet.reverse):
        with pytest.raises(WalletRefusedError) as refused:
            step("wnohold01")
        assert refused.value.reason == "no_such_hold"


def test_reverse_of_a_hold_never_captured_is_refused(wallet: Wallet) -> None:
    """Only captured money can be reversed."""
    wallet.hold("wcap00004", PREFERRED_GOOD.patron_id, Decimal("10.00"))
    with pytest.raises(WalletRefusedError) as refused:
        wallet.reverse("wcap00004")
    assert refused.value.reason == "wrong_state"


def test_credit_adds_a_deposit_once_per_key(wallet: Wallet) -> None:
    """A confirmed deposit is credited once; the same key again answers the same credit; another
    amount under that key is a conflict."""
    first = wallet.credit("dcred0001", PREFERRED_GOOD.patron_id, Decimal("89.76"))
    again = wallet.credit("dcred0001", PREFERRED_GOOD.patron_id, Decimal("89.76"))
    assert first == again and first.amount == Decimal("89.76")
    assert wallet.balance(PREFERRED_GOOD.patron_id) == Decimal("10089.76")
    with pytest.raises(WalletRefusedError) as refused:
        wallet.credit("dcred0001", PREFERRED_GOOD.patron_id, Decimal("1.00"))
    assert refused.value.reason == "key_conflict"
    with pytest.raises(WalletRefusedError) as unknown:
        wallet.credit("dcred0002", "no-such-patron", Decimal("1.00"))
    assert unknown.value.reason == "unknown_patron"


def test_simulator_counts_each_movement_once(sim: SimProcess) -> None:
    """The simulator's stats count captures, reversals and credits per key, each once."""
    sim.reset()
    w = HttpWallet(WalletSettings(url=sim.wallet_url, token=TOKEN, timeout_s=2))
    w.hold("wstat0001", PREFERRED_GOOD.patron_id, Decimal("5.00"))
    for _ in range(3):
        w.capture("wstat0001")
    w.reverse("wstat0001")
    w.reverse("wstat0001")
    w.credit("dstat0001", PREFERRED_GOOD.patron_id, Decimal("7.00"))
    w.credit("dstat0001", PREFERRED_GOOD.patron_id, Decimal("7.00"))
    stats = requests.get(f"{sim.wallet_url}/sim/stats", timeout=5).json()
    assert stats["captures"] == {"wstat0001": 1} and stats["reversals"] == {"wstat0001": 1}
    assert stats["credits"] == {"dstat0001": 1} and stats["holds"] == {"wstat0001": 1}
