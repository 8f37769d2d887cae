"""The operator site's API over real HTTP: `vipflow web`, the simulator's VIP Connect, the ledger, tokens.

One stack per module (simulator, ingestor, worker, web service) with ``sessions.required`` true and
configured redirects; each test opens its own sessions.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from producers.sim.patrons import PREFERRED_GOOD, UNKNOWN_CARD
from tests.integration.harness import Stack
from worker.ledger.api_tokens import TokenStore
from worker.ledger.sessions import SessionStore

pytestmark = pytest.mark.integration

RETURN_URL = "https://casino.example/cashier/return"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Simulator, ingestor, worker and web service; sessions required; redirects per type and state."""
    from tests.conftest import TEST_REDIS_URL

    s = Stack(TEST_REDIS_URL, VIPFLOW_SESSIONS__REQUIRED="true",
              VIPFLOW_REDIRECTS__DEFAULT="/cashier",
              VIPFLOW_REDIRECTS__DEPOSIT='{"approved": "/lobby", "review": "/cashier/pending", '
                                        '"pending": "/cashier/wait"}',
              VIPFLOW_REDIRECTS__WITHDRAW='{"approved": "/lobby", "review": "/cashier/pending", '
                                         '"rejected": "/cashier/declined"}')
    try:
        s.redis.ping()
        s.start_sim()
        s.start_ingest()
        s.start_worker()
        s.start_web()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def token(stack: Stack) -> str:
    """A token with the sessions and status scopes."""
    return TokenStore(stack.ledger.engine).create("site", ["sessions", "status"], "test")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def session_body(**overrides: Any) -> dict[str, Any]:
    """A session request for the simulator's patron in good standing."""
    body: dict[str, Any] = {
        "patron_id": PREFERRED_GOOD.patron_id, "vip_card_number": PREFERRED_GOOD.vip_card_number,
        "date_of_birth": "04/15/1980", "transaction_type": "deposit", "amount": "50.00",
        "wallet_balance": "1000.00", "remaining_daily_deposit": "999.99", "product_type": "preferred",
        "return_url": RETURN_URL,
    }
    body.update(overrides)
    return body


def open_session(stack: Stack, token: str, **overrides: Any) -> requests.Response:
    return requests.post(f"{stack.web_url}/api/v1/sessions", json=session_body(**overrides), headers=auth(token),
                         timeout=10)


def test_the_service_says_where_it_listens_once_bound(stack: Stack) -> None:
    """`vipflow web` logs "web listening on http://HOST:PORT" once, with the port it bound."""
    assert stack.web is not None
    assert sum(f"web listening on {stack.web_url}" in line for line in list(stack.web.lines)) == 1, stack.web.lines


def test_a_session_is_opened_at_vip_and_recorded(stack: Stack, token: str) -> None:
    """POST /api/v1/sessions issues a transaction id, opens the session at VIP and answers the web component URL."""
    answer = open_session(stack, token)
    assert answer.status_code == 201, answer.text
    opened = answer.json()
    txid = opened["transaction_id"]
    assert len(txid) == 24 and txid.isalnum() and opened["amount"] == "50.00"
    url = urlsplit(opened["web_component_url"])
    assert url.fragment == opened["session_id"]
    assert parse_qs(url.query) == {"mode": ["deposit"], "redirectUrl": [RETURN_URL]}
    assert stack.sim is not None and opened["web_component_url"].startswith(stack.sim.vip_url)
    vip_side = {s["transactionId"]: s for s in requests.get(f"{stack.sim.vip_url}/sim/sessions", timeout=5).json()}
    assert vip_side[txid]["sessionId"] == opened["session_id"]
    assert vip_side[txid]["patronId"] == PREFERRED_GOOD.patron_id and vip_side[txid]["amount"] == "50.00"
    stored = SessionStore(stack.ledger.engine).get(txid)
    assert stored is not None and stored.status == "open" and stored.vip_session_id == opened["session_id"]
    assert (stored.patron_id, stored.vip_card_number, stored.amount) == (
        PREFERRED_GOOD.patron_id, PREFERRED_GOOD.vip_card_number, Decimal("50.00"))
    assert stored.return_url == RETURN_URL and stored.token_name == "site" and stored.opened_at is not None


def test_the_operators_own_transaction_id_is_checked_and_kept(stack: Stack, token: str) -> None:
    """A transaction id of the operator's is used when valid, refused with 422 when not, and 409 when used."""
    assert open_session(stack, token, transaction_id="opOwnId000001").json()["transaction_id"] == "opOwnId000001"
    again = open_session(stack, token, transaction_id="opOwnId000001")
    assert again.status_code == 409 and "opOwnId000001" in again.json()["error"]
    for bad in ("short", "has-dash-0001", "x" * 26):
        refused = open_session(stack, token, transaction_id=bad)
        assert refused.status_code == 422 and refused.json()["error"].startswith("transaction_id:")


def test_vip_refusing_gives_its_error_and_no_open_session(stack: Stack, token: str) -> None:
    """VIP's 400 (unknown card) comes back as 400 with VIP's error body; the session is recorded refused."""
    answer = open_session(stack, token, vip_card_number=UNKNOWN_CARD, transaction_id="refusedTx00001")
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["vip_status"] == 400 and body["vip_error"]["errorCode"] == 99
    assert "VIP Connect refused the session" in body["error"] and "\n" not in body["error"]
    stored = SessionStore(stack.ledger.engine).get("refusedTx00001")
    assert stored is not None and stored.status == "refused" and stored.vip_session_id is None
    assert SessionStore(stack.ledger.engine).open_session("refusedTx00001") is None
    status = requests.get(f"{stack.web_url}/api/v1/transactions/refusedTx00001", headers=auth(token), timeout=5)
    assert status.status_code == 404


def test_vip_failing_gives_502_and_no_open_session(stack: Stack, token: str) -> None:
    """VIP answering 500 gives 502 naming the failure; nothing is open."""
    assert stack.sim is not None
    stack.sim.faults({"transaction_id": "vipDownTx0001", "endpoint": "session", "responses": [500]})
    answer = open_session(stack, token, transaction_id="vipDownTx0001")
    assert answer.status_code == 502 and "nothing was opened" in answer.json()["error"]
    stored = SessionStore(stack.ledger.engine).get("vipDownTx0001")
    assert stored is not None and stored.status == "refused"


def test_tokens_missing_wrong_revoked_get_401_and_unscoped_403(stack: Stack, token: str) -> None:
    """No token, a wrong one and a revoked one get 401; a token without the scope gets 403; uses are recorded."""
    tokens = TokenStore(stack.ledger.engine)
    url = f"{stack.web_url}/api/v1/sessions"
    assert requests.post(url, json=session_body(), timeout=5).status_code == 401
    assert requests.post(url, json=session_body(), headers=auth("vf_nottherightone"), timeout=5).status_code == 401
    revoked = tokens.create("old-site", ["sessions"], "test")
    assert open_session(stack, revoked).status_code == 201
    tokens.revoke("old-site", "test")
    answer = open_session(stack, revoked)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
    status_only = tokens.create("status-only", ["status"], "test")
    forbidden = open_session(stack, status_only)
    assert forbidden.status_code == 403 and "sessions" in forbidden.json()["error"]
    listed = {t.name: t for t in tokens.listing()}
    assert listed["old-site"].uses == 1 and listed["old-site"].revoked_at is not None
    assert listed["status-only"].uses == 1  # the 403 is recorded with the token's name too


# --- notifications checked against their session (sessions.required is true in this stack) ------------


def approvals(stack: Stack, txid: str) -> int:
    assert stack.sim is not None
    return int(stack.sim.stats().get("approvals", {}).get(txid, 0))


def vip_session(stack: Stack, txid: str) -> dict[str, Any]:
    """The session as the simulator (VIP) holds it: what its notification is built from."""
    assert stack.sim is not None
    found = {s["transactionId"]: s for s in requests.get(f"{stack.sim.vip_url}/sim/sessions", timeout=5).json()}
    return dict(found[txid])


def notify_for_session(stack: Stack, txid: str, **changes: Any) -> dict[str, Any]:
    """Send the notification VIP would send after the session (``changes`` alter the session first)."""
    import random

    from producers.sim.sender import notification_for_session

    kind, body = notification_for_session({**vip_session(stack, txid), **changes}, random.Random(7))
    answer = stack.notify(kind, body)
    assert answer.status_code == 200, answer.text
    return body


def status_of(stack: Stack, token: str, txid: str) -> dict[str, Any]:
    answer = requests.get(f"{stack.web_url}/api/v1/transactions/{txid}", headers=auth(token), timeout=5)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_sessions_deposit_is_approved_once_and_redirected_to_the_lobby(stack: Stack, token: str) -> None:
    """Session, then its deposit notification: approved once; the status API answers the deposit's redirects."""
    txid = open_session(stack, token, amount="75.00").json()["transaction_id"]
    assert status_of(stack, token, txid) == {"transaction_id": txid, "state": "pending", "transaction_type": "deposit",
                                             "amount": "75.00", "redirect": "/cashier/wait"}
    notify_for_session(stack, txid)
    rec = stack.wait_state(txid, ("approved", "review", "rejected"))
    assert rec["state"] == "approved", rec.get("review_reason")
    assert rec["facts"]["session"] == {"required": True, "found": True, "amount": "75.00",
                                       "transaction_type": "deposit", "age_s": rec["facts"]["session"]["age_s"]}
    assert approvals(stack, txid) == 1
    assert status_of(stack, token, txid) == {"transaction_id": txid, "state": "approved",
                                             "transaction_type": "deposit", "amount": "75.00", "redirect": "/lobby"}


def test_a_withdrawal_without_patron_id_is_frozen_for_the_sessions_patron(stack: Stack, token: str) -> None:
    """A withdrawal notification without PatronId is frozen for the session's patron and approved once."""
    txid = open_session(stack, token, transaction_type="withdraw", amount="120.00").json()["transaction_id"]
    body = notify_for_session(stack, txid)
    assert "PatronId" not in body and "patronId" not in body
    rec = stack.wait_state(txid, ("approved", "review", "rejected"))
    assert rec["state"] == "approved", rec.get("review_reason")
    assert [a["name"] for a in rec["actions"] if a["status"] == "done"][:1] == ["freeze"]
    assert stack.sim is not None
    wallet = requests.get(f"{stack.sim.wallet_url}/sim/stats", timeout=5).json()
    assert wallet["holds"][txid] == 1
    assert wallet["held"][txid]["patron_id"] == PREFERRED_GOOD.patron_id
    assert wallet["held"][txid]["amount"] == "120.00"
    assert approvals(stack, txid) == 1
    assert status_of(stack, token, txid)["redirect"] == "/lobby"


def test_a_notification_never_issued_is_reviewed(stack: Stack, token: str) -> None:
    """With sessions required, a transaction id vipflow never issued goes to review, naming the rule."""
    from producers.sim.sender import build_notification

    assert stack.notify("deposit", build_notification(PREFERRED_GOOD, "deposit", Decimal("30.00"),
                                                      transaction_id="neverIssued001")).status_code == 200
    rec = stack.wait_state("neverIssued001", ("approved", "review", "rejected"))
    assert rec["state"] == "review"
    assert "session-never-issued" in [m["id"] for m in rec["decision"]["matched"]]
    assert approvals(stack, "neverIssued001") == 0
    assert status_of(stack, token, "neverIssued001")["redirect"] == "/cashier/pending"


def test_an_amount_above_the_sessions_is_reviewed(stack: Stack, token: str) -> None:
    """A notification whose amount exceeds its session's goes to review, not approved."""
    txid = open_session(stack, token, amount="40.00").json()["transaction_id"]
    notify_for_session(stack, txid, amount="40.01")
    rec = stack.wait_state(txid, ("approved", "review", "rejected"))
    assert rec["state"] == "review"
    assert "above-session-amount" in [m["id"] for m in rec["decision"]["matched"]]
    assert approvals(stack, txid) == 0


def test_a_type_mismatch_is_rejected(stack: Stack, token: str) -> None:
    """A withdrawal notification for a deposit session is rejected (and redirected as configured)."""
    txid = open_session(stack, token, amount="60.00").json()["transaction_id"]
    notify_for_session(stack, txid, transactionType="withdraw")
    rec = stack.wait_state(txid, ("approved", "review", "rejected"))
    assert rec["state"] == "rejected"
    assert "session-type-mismatch" in [m["id"] for m in rec["decision"]["matched"]]
    assert approvals(stack, txid) == 0
    assert status_of(stack, token, txid) == {"transaction_id": txid, "state": "rejected",
                                             "transaction_type": "withdraw", "amount": "60.00",
                                             "redirect": "/cashier/declined"}


def test_the_status_api_says_nothing_personal(stack: Stack, token: str) -> None:
    """The status answer holds no patron id, card, name or bank, whatever the state."""
    txid = open_session(stack, token).json()["transaction_id"]
    text = requests.get(f"{stack.web_url}/api/v1/transactions/{txid}", headers=auth(token), timeout=5).text
    for personal in (PREFERRED_GOOD.patron_id, PREFERRED_GOOD.vip_card_number, RETURN_URL):
        assert personal not in text


# --- authentication before the body, bounded bodies, one error shape -------------------------------------


def _raw_post(stack: Stack, path: str, headers: dict[str, str], body: bytes,
              declared: int) -> tuple[int, dict[str, Any], float]:
    """POST over a bare socket declaring ``declared`` bytes but sending only ``body``: the status and JSON
    body of the answer and how long it took. The service must answer without waiting for the rest."""
    import json
    import socket
    import time

    host, port = urlsplit(stack.web_url).hostname, urlsplit(stack.web_url).port
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
            f"Content-Length: {declared}", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    started = time.monotonic()
    with socket.create_connection((str(host), int(port or 0)), timeout=5) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        answer = b""
        while chunk := sock.recv(65536):  # "Connection: close": until the service closes; a timeout: it waited
            answer += chunk
    elapsed = time.monotonic() - started
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2]), elapsed


def test_a_large_body_without_a_token_gets_401_unread(stack: Stack) -> None:
    """50 MB declared, 64 KB sent, no token: 401 at once (the body is not waited for nor read), error shape."""
    status, body, elapsed = _raw_post(stack, "/api/v1/sessions", {}, b"x" * 65536, 50 * 1024 * 1024)
    assert status == 401 and body["error"].startswith("no API token") and set(body) == {"error"}
    assert elapsed < 2, elapsed
    status, body, _ = _raw_post(stack, "/api/v1/sessions", {"Authorization": "Bearer vf_wrong"}, b"{",
                                50 * 1024 * 1024)
    assert status == 401 and "unknown or revoked" in body["error"]


def test_a_large_body_with_a_token_lacking_the_scope_gets_403_unread(stack: Stack) -> None:
    """The scope is checked before the body too."""
    status_only = TokenStore(stack.ledger.engine).create("status-only-big", ["status"], "test")
    status, body, elapsed = _raw_post(stack, "/api/v1/sessions", auth(status_only), b"{", 50 * 1024 * 1024)
    assert status == 403 and "sessions" in body["error"] and elapsed < 2


def test_a_50mb_body_without_a_token_from_requests_gets_401(stack: Stack) -> None:
    """What the user did: requests sending 50 MB without a token gets 401, not 422/400."""
    import time

    started = time.monotonic()
    answer = requests.post(f"{stack.web_url}/api/v1/sessions", data=b"x" * (50 * 1024 * 1024),
                           headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 401 and answer.json()["error"].startswith("no API token")
    assert time.monotonic() - started < 10


def test_bodies_over_the_limit_get_413(stack: Stack, token: str) -> None:
    """Past web.max_body_bytes (64 KB): 413 with the error shape, declared (unread) or chunked (read no further)."""
    status, body, elapsed = _raw_post(stack, "/api/v1/sessions", auth(token), b"{", 50 * 1024 * 1024)
    assert status == 413 and "65536 bytes" in body["error"] and elapsed < 2

    def chunks() -> Iterator[bytes]:
        yield b'{"patron_id": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}'

    chunked = requests.post(f"{stack.web_url}/api/v1/sessions", data=chunks(),
                            headers={**auth(token), "Content-Type": "application/json"}, timeout=10)
    assert chunked.status_code == 413 and set(chunked.json()) == {"error"}
    # Just under the limit is read and validated as usual.
    assert open_session(stack, token, patron_id="p" * 150).status_code == 201


def test_every_error_has_the_documented_shape(stack: Stack, token: str) -> None:
    """Not JSON: 400; unknown route: 404; wrong method: 405; invalid: 422; each {"error": one line} only."""
    url = f"{stack.web_url}/api/v1/sessions"
    answers = {
        "not json": requests.post(url, data=b"{not json", headers={**auth(token), "Content-Type": "application/json"},
                                  timeout=5),
        "unknown route": requests.get(f"{stack.web_url}/api/v1/nope", headers=auth(token), timeout=5),
        "wrong method": requests.delete(url, headers=auth(token), timeout=5),
        "invalid": open_session(stack, token, amount="-1"),
        "no token": requests.post(url, json=session_body(), timeout=5),
    }
    for what, answer in answers.items():
        assert answer.headers["content-type"] == "application/json", what
        body = answer.json()
        assert set(body) == {"error"} and body["error"] and "\n" not in body["error"], (what, body)
    assert answers["not json"].status_code == 400
    assert answers["not json"].json()["error"].startswith("the body is not JSON")
    assert answers["unknown route"].status_code == 404
    assert answers["unknown route"].json() == {"error": "no such route: GET /api/v1/nope"}
    assert answers["wrong method"].status_code == 405 and "POST" in answers["wrong method"].json()["error"]
    assert answers["invalid"].status_code == 422 and answers["invalid"].json()["error"].startswith("amount:")
    assert answers["no token"].status_code == 401


@pytest.mark.parametrize("return_url", ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<b>x</b>",
                                        "/cashier", "//evil.example/x", "ftp://casino.example/", "https://",
                                        "https://casino.example/a b", "https://casino.example/\n"])
def test_a_return_url_that_is_not_absolute_http_is_refused(stack: Stack, token: str, return_url: str) -> None:
    """Only absolute http(s) URLs go to VIP as redirectUrl: anything else is 422 naming return_url, nothing opened."""
    assert stack.sim is not None
    before = len(requests.get(f"{stack.sim.vip_url}/sim/sessions", timeout=5).json())
    answer = open_session(stack, token, return_url=return_url)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"].startswith("return_url: must be an absolute http:// or https:// URL")
    assert len(requests.get(f"{stack.sim.vip_url}/sim/sessions", timeout=5).json()) == before


@pytest.mark.parametrize("return_url", ["http://127.0.0.1:8080/back", "HTTPS://Casino.example?tx=1#done",
                                        "https://[::1]:8443/return"])
def test_absolute_http_return_urls_are_accepted(stack: Stack, token: str, return_url: str) -> None:
    """http and https URLs with a host (name, IPv4, IPv6, a port, a query) are passed to VIP as given."""
    answer = open_session(stack, token, return_url=return_url)
    assert answer.status_code == 201, answer.text
    assert parse_qs(urlsplit(answer.json()["web_component_url"]).query)["redirectUrl"] == [return_url]


def test_the_openapi_document_states_the_return_url_rule(stack: Stack) -> None:
    """The pattern the service enforces is the one its OpenAPI document gives (schemathesis generates from it)."""
    from worker.patron_sessions import RETURN_URL

    document = requests.get(f"{stack.web_url}/openapi.json", timeout=5).json()
    field = document["components"]["schemas"]["SessionRequest"]["properties"]["return_url"]
    assert field["pattern"] == RETURN_URL and field["maxLength"] == 2000
