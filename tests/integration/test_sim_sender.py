"""The notification sender: signed, varied, valid notifications over real HTTP."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from producers.sim.patrons import ONLINE, PREFERRED_GOOD
from producers.sim.sender import build_notification, send_notifications
from worker.notification import decode_body, parse_notification
from worker.tokens import TokenInvalid, TokenPolicy, bearer, verify

pytestmark = pytest.mark.integration

KEY = os.urandom(32)
ISSUER, AUDIENCE = "vip-connect", "vip-api"


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any], str]] = []

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            verify(bearer(self.headers.get("Authorization")), [KEY], TokenPolicy(ISSUER, AUDIENCE))
        except TokenInvalid:
            self.send_response(401)
            self.end_headers()
            return
        self.received.append((self.path, decode_body(raw), raw.decode()))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, dict[str, Any], str]]]]:
    """A tiny real HTTP server standing in for the ingestor, checking the JWT."""
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Receiver.received
    finally:
        server.shutdown()
        server.server_close()


def test_sent_notifications_are_signed_valid_and_unique(receiver: Any) -> None:
    """Every notification is accepted with 200, parses on its route, and has a unique 8..25 char id."""
    url, received = receiver
    report = send_notifications(url, count=60, rate=500, key=KEY, issuer=ISSUER, audience=AUDIENCE, seed=7)
    assert report.sent == 60 and report.ok == 60
    ids = set()
    for path, body, _ in received:
        kind = "deposit" if path.endswith("deposit") else "withdraw"
        note = parse_notification(body, kind)
        assert 8 <= len(note.transaction_id) <= 25
        ids.add(note.transaction_id)
    assert len(ids) == 60


def test_sender_mixes_encodings_and_transfer_types(receiver: Any) -> None:
    """The sent bodies mix key casings, string and JSON numbers, and ACH/SDA/INP withdrawals."""
    url, received = receiver
    send_notifications(url, count=80, rate=1000, key=KEY, issuer=ISSUER, audience=AUDIENCE, seed=3)
    raws = [raw for _, _, raw in received]
    assert any('"TransactionId"' in r for r in raws) and any('"transactionId"' in r for r in raws)
    assert any('"Amount": "' in r or '"amount": "' in r for r in raws)
    assert any(isinstance(b.get("amount", b.get("Amount")), Decimal) for _, b, _ in received)
    types = {parse_notification(b, "withdraw").fund_transfer_type for p, b, _ in received if p.endswith("withdraw")}
    assert types == {"ACH", "SDA", "INP"}


def test_wrong_key_gets_401s_counted(receiver: Any) -> None:
    """Notifications signed with another key are refused and the report counts the 401s."""
    url, _ = receiver
    report = send_notifications(url, count=5, rate=0, key=os.urandom(32), issuer=ISSUER, audience=AUDIENCE, seed=1)
    assert report.statuses[401] == 5 and report.ok == 0


def test_build_notification_is_exact() -> None:
    """build_notification gives the asked amount, patron, account and transfer type exactly."""
    body = build_notification(
        ONLINE,
        "withdraw",
        Decimal("348.31"),
        transaction_id="exact000001",
        fund_transfer_type="INP",
        pascal=False,
        as_strings=False,
    )
    note = parse_notification(json.loads(json.dumps(body, default=str)), "withdraw")
    assert note.amount == Decimal("348.31") and note.vip_card_number == ONLINE.vip_card_number
    assert note.fund_transfer_type == "INP" and note.masked_bank_account_number.endswith("4321")
    assert note.bank_routing_number == ONLINE.banks[0].routing_number


def test_deposit_carries_operator_limits() -> None:
    """A deposit notification carries the operator limits with the patron's wallet balance."""
    body = build_notification(PREFERRED_GOOD, "deposit", Decimal("89.76"))
    note = parse_notification(body, "deposit")
    assert note.operator_limits is not None
    assert note.operator_limits.wallet_balance == PREFERRED_GOOD.wallet_balance
