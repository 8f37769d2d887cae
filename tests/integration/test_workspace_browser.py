"""The review workspace in a real Chromium (Playwright, Debian's chromium through ``executable_path``),
against the real ``vipflow web``, Redis, the ledger, a Celery worker and the VIP simulator: one stack for
the module. Screenshots of the queue, a transaction page and the audit page go to ``var/screenshots/``.

Locally a missing Chromium (or Playwright) skips these tests, saying so; under CI (``CI`` set) they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from producers.sim.patrons import crowd_patron
from producers.sim.sender import build_notification
from tests.conftest import TEST_REDIS_URL
from tests.integration.harness import ROOT, Stack, running_stack
from tests.integration.oidc_provider import Provider, running_provider
from worker.ledger.users import UserStore
from worker.review_roles import Role

pytestmark = pytest.mark.integration
CHROMIUM = os.environ.get("VIPFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "var" / "screenshots"
PASSWORD = "correct horse battery staple"
USERS = {"alice": Role.REVIEWER, "sam": Role.SENIOR, "sue": Role.SENIOR, "vic": Role.VIEWER, "ada": Role.ADMIN}
_started = time.monotonic()


def _no_browser(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI must provide it (.ci/run installs Debian's chromium)")
    pytest.skip(f"{why}; install Debian's chromium (apt-get install chromium) to run the browser tests")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright, for the module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("the playwright package is not installed (make install)")
    if not Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is None:
        _no_browser(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    """A small OpenID Connect provider on a free port (tests/integration/oidc_provider.py)."""
    with running_provider("vipflow-test", "provider-secret") as p:
        yield p


@pytest.fixture(scope="module")
def stack(provider: Provider) -> Iterator[Stack]:
    """Simulator, ingestor, worker and vipflow web; four eyes above 5,000.00, reviewers up to 4,000.00; the
    test provider for single sign-on."""
    with running_stack(TEST_REDIS_URL, VIPFLOW_REVIEW__FOUR_EYES_AMOUNT="5000.00",
                       VIPFLOW_REVIEW__REVIEWER_LIMIT="4000.00", VIPFLOW_WEB__LOGIN_MAX_FAILURES="3",
                       VIPFLOW_WEB__SESSION_SECRET="a-test-secret-of-at-least-32-characters!",
                       VIPFLOW_WEB__OIDC__ISSUER=provider.issuer, VIPFLOW_WEB__OIDC__CLIENT_ID=provider.client_id,
                       VIPFLOW_WEB__OIDC__CLIENT_SECRET=provider.client_secret,
                       VIPFLOW_WEB__OIDC__LABEL="the test provider") as s:
        users = UserStore(s.ledger.engine)
        for name, role in USERS.items():
            users.add(name, role, PASSWORD, "os:test")
        users.add("olga", Role.REVIEWER, None, "os:test")  # single sign-on only
        s.start_web()
        yield s
    print(f"\nbrowser tests: the module took {time.monotonic() - _started:.1f} s (stack start included)")


def in_review(stack: Stack, txid: str, amount: str, patron: int) -> None:
    """A withdrawal above 2,500.00 from a crowd patron (wallet 10,000.00): the shipped rules send it to review."""
    body = build_notification(crowd_patron(patron), "withdraw", Decimal(amount), transaction_id=txid)
    assert stack.notify("withdraw", body).status_code == 200
    rec = stack.wait_state(txid, ("approved", "review", "rejected"))
    assert rec["state"] == "review", rec


def approvals(stack: Stack, txid: str) -> int:
    assert stack.sim is not None
    return int(stack.sim.stats().get("approvals", {}).get(txid, 0))


def hold(stack: Stack, txid: str) -> str | None:
    assert stack.sim is not None
    held = requests.get(f"{stack.sim.wallet_url}/sim/stats", timeout=5).json()["held"]
    return held.get(txid, {}).get("status")


def human(stack: Stack, txid: str) -> list[tuple[str | None, str | None, str | None]]:
    return [(e.name, e.status, e.actor) for e in stack.events(txid) if e.kind == "human"]


def login(chromium: Any, stack: Stack, name: str) -> Any:
    """A new browser context (its own cookies) logged in as ``name``; its page."""
    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.goto(f"{stack.web_url}/queue")
    assert "/login" in page.url
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/(queue|users)"))
    return page


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def decide(page: Any, stack: Stack, txid: str, verdict: str, reason: str, note: str = "") -> None:
    page.goto(f"{stack.web_url}/tx/{txid}")
    form = page.locator(f"#{verdict}-form")
    form.get_by_label(re.compile("Reason for (approving|rejecting)")).select_option(reason)
    if note:
        form.get_by_label(re.compile("Note")).fill(note)
    form.get_by_role("button").click()
    page.wait_for_load_state()


def test_login_refuses_a_wrong_password_and_lets_the_right_one_in(chromium: Any, stack: Stack) -> None:
    """A wrong password is refused with a message; the right one opens the queue, with an HttpOnly,
    SameSite cookie."""
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{stack.web_url}/")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    assert "wrong user name or password" in page.locator("[role=alert]").inner_text()
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile("/queue"))
    assert page.get_by_role("heading", name=re.compile("Review queue")).is_visible()
    cookie = next(c for c in context.cookies() if c["name"] == "vipflow_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    context.close()


def test_the_queue_filters_and_claim_next(chromium: Any, stack: Stack) -> None:
    """The queue lists waiting withdrawals oldest first with type, amount, rules and claims; a filter on
    the amount narrows it; "claim next" claims the oldest one the reviewer may decide."""
    in_review(stack, "wsq0000001", "2600.00", 11)
    in_review(stack, "wsq0000002", "3900.00", 12)
    page = login(chromium, stack, "alice")
    rows = page.locator("tr[data-tx]")
    ids = [rows.nth(i).get_attribute("data-tx") for i in range(rows.count())]
    assert ids.index("wsq0000001") < ids.index("wsq0000002")  # oldest first
    first = page.locator("tr[data-tx=wsq0000001]")
    assert "withdraw" in first.inner_text() and "2600.00" in first.inner_text()
    assert "large-withdrawal" in first.inner_text() and "nobody" in first.inner_text()
    page.get_by_label("Amount from ($)").fill("3000")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert page.locator("tr[data-tx=wsq0000002]").count() == 1
    assert page.locator("tr[data-tx=wsq0000001]").count() == 0
    shot(page, "queue")
    page.get_by_role("button", name="Claim next").click()
    page.wait_for_load_state()
    assert page.url.endswith("/tx/wsq0000002"), page.url
    assert page.locator("#claimed-by").inner_text() == "user:alice"
    assert ("claim", "done", "user:alice") in human(stack, "wsq0000002")
    other = login(chromium, stack, "sam")  # a claim is binding for deciding
    decide(other, stack, "wsq0000002", "reject", "limits")
    assert "claimed by user:alice" in other.content()
    assert stack.record("wsq0000002")["state"] == "review"  # type: ignore[index]
    page.get_by_role("button", name="Release my claim").click()
    page.wait_for_load_state()
    assert page.locator("#claimed-by").inner_text() == "nobody"


def test_approve_once_even_with_a_double_click_and_a_second_tab(chromium: Any, stack: Stack) -> None:
    """Approving in the browser calls VIP Connect once: a double click, and a second tab's approval
    afterwards, change nothing; the hold is captured; the reviewer is the recorded actor."""
    in_review(stack, "wsa0000001", "3100.00", 21)
    page = login(chromium, stack, "alice")
    second_tab = page.context.new_page()
    second_tab.goto(f"{stack.web_url}/tx/wsa0000001")  # open before the approval
    page.goto(f"{stack.web_url}/tx/wsa0000001")
    form = page.locator("#approve-form")
    form.get_by_label(re.compile("Reason for approving")).select_option("verified_patron")
    shot(page, "transaction")
    form.get_by_role("button").dblclick()
    stack.wait_state("wsa0000001", ("approved",))
    second_tab.locator("#approve-form").get_by_label(re.compile("Reason for approving")).select_option("known_pattern")
    second_tab.locator("#approve-form").get_by_role("button").click()
    second_tab.wait_for_load_state()
    assert "not waiting for review (it is approved)" in second_tab.locator(".flash").inner_text()
    assert approvals(stack, "wsa0000001") == 1
    assert hold(stack, "wsa0000001") == "captured"
    done = [h for h in human(stack, "wsa0000001") if h[0] == "review_approve" and h[1] == "done"]
    assert done == [("review_approve", "done", "user:alice")]


def test_reject_with_a_reason_releases_the_hold(chromium: Any, stack: Stack) -> None:
    """A rejection needs a reason; with one it releases the withdrawal's hold and approves nothing."""
    in_review(stack, "wsr0000001", "2700.00", 31)
    assert hold(stack, "wsr0000001") == "held"
    page = login(chromium, stack, "alice")
    decide(page, stack, "wsr0000001", "reject", "other")  # "other" without a note is refused
    assert "'other' needs a few words" in page.locator(".flash").inner_text()
    decide(page, stack, "wsr0000001", "reject", "suspected_fraud", "new device, new bank account")
    assert "rejected" in page.locator(".flash").inner_text()
    assert stack.record("wsr0000001")["state"] == "rejected"  # type: ignore[index]
    assert hold(stack, "wsr0000001") == "released"
    assert approvals(stack, "wsr0000001") == 0
    event = next(e for e in stack.events("wsr0000001") if e.name == "review_reject" and e.status == "done")
    assert event.actor == "user:alice" and event.data is not None
    assert event.data["reason_code"] == "suspected_fraud" and "new device" in event.data["reason"]


def test_four_eyes_needs_a_second_different_senior(chromium: Any, stack: Stack) -> None:
    """Above review.four_eyes_amount: a reviewer past their limit cannot approve; a senior's approval is
    a first approval only (VIP not called); the same senior cannot give the second; another senior's
    approval calls VIP Connect once."""
    in_review(stack, "wsf0000001", "6000.00", 41)
    alice = login(chromium, stack, "alice")
    alice.goto(f"{stack.web_url}/tx/wsf0000001")
    assert "Above your limit of $4000.00" in alice.content()
    decide(alice, stack, "wsf0000001", "approve", "verified_patron")
    assert alice.locator("[role=alert]").inner_text().startswith("6000.00 is above your limit")
    sam = login(chromium, stack, "sam")
    decide(sam, stack, "wsf0000001", "approve", "verified_patron")
    assert "first approval of wsf0000001 recorded" in sam.locator(".flash").inner_text()
    assert approvals(stack, "wsf0000001") == 0 and stack.record("wsf0000001")["state"] == "review"  # type: ignore[index]
    assert "First approval by user:sam" in sam.locator("#four-eyes").inner_text()
    decide(sam, stack, "wsf0000001", "approve", "verified_patron")
    assert "you gave the first approval" in sam.locator("[role=alert]").inner_text()
    assert approvals(stack, "wsf0000001") == 0
    sue = login(chromium, stack, "sue")
    decide(sue, stack, "wsf0000001", "approve", "known_pattern")
    assert stack.record("wsf0000001")["state"] == "approved"  # type: ignore[index]
    assert approvals(stack, "wsf0000001") == 1
    steps = [h for h in human(stack, "wsf0000001") if h[1] == "done"]
    assert steps == [("review_first", "done", "user:sam"), ("review_approve", "done", "user:sue")]
    second = next(e for e in stack.events("wsf0000001") if e.name == "review_approve" and e.status == "done")
    assert second.data is not None and second.data["first_approver"] == "user:sam"


def test_a_viewer_sees_masked_data_and_cannot_decide(chromium: Any, stack: Stack) -> None:
    """A viewer's transaction page has no decision forms and no reveal buttons, and a forged approval
    (with a valid CSRF token) is refused with 403, changing nothing."""
    in_review(stack, "wsv0000001", "2800.00", 51)
    vic = login(chromium, stack, "vic")
    vic.goto(f"{stack.web_url}/tx/wsv0000001")
    assert vic.locator("#view-only").is_visible()
    assert vic.locator("#approve-form").count() == 0
    assert vic.get_by_role("button", name=re.compile("Reveal")).count() == 0
    card = crowd_patron(51).vip_card_number
    assert card not in vic.content()
    token = vic.locator("input[name=csrf]").first.get_attribute("value")
    answer = vic.request.post(f"{stack.web_url}/tx/wsv0000001/approve",
                              form={"csrf": token, "reason": "verified_patron"}, max_redirects=0)
    assert answer.status == 403 and "viewer may not" in answer.text()
    assert stack.record("wsv0000001")["state"] == "review" and approvals(stack, "wsv0000001") == 0  # type: ignore[index]


def test_a_reveal_shows_the_field_and_is_recorded(chromium: Any, stack: Stack) -> None:
    """A reviewer reveals the masked VIP card number: shown in clear on that answer only, and the reveal
    (the field's name, never its value) is a human event with the reviewer as actor."""
    page = login(chromium, stack, "alice")
    page.goto(f"{stack.web_url}/tx/wsv0000001")
    card = crowd_patron(51).vip_card_number
    row = page.locator("tr[data-field]", has_text=re.compile("vipcardnumber", re.IGNORECASE))
    assert card not in row.inner_text()
    row.get_by_role("button", name=re.compile("Reveal")).click()
    page.wait_for_load_state()
    assert card in page.locator("tr[data-field]", has_text=re.compile("vipcardnumber", re.IGNORECASE)).inner_text()
    reveal = next(e for e in stack.events("wsv0000001") if e.name == "reveal")
    assert reveal.actor == "user:alice" and reveal.data is not None
    assert re.fullmatch("(?i)vipcardnumber", reveal.data["field"]) and card not in str(reveal.data)
    page.goto(f"{stack.web_url}/tx/wsv0000001")
    assert card not in page.content()  # masked again on the next view


def test_a_form_without_its_csrf_token_is_refused(chromium: Any, stack: Stack) -> None:
    """A logged-in reviewer's POST without the CSRF token (or with another) is refused with 403; nothing
    is approved or recorded."""
    page = login(chromium, stack, "alice")
    before = human(stack, "wsv0000001")
    for form in ({"reason": "verified_patron"}, {"reason": "verified_patron", "csrf": "forged"}):
        answer = page.request.post(f"{stack.web_url}/tx/wsv0000001/approve", form=form, max_redirects=0)
        assert answer.status == 403 and "CSRF" in answer.text()
    assert human(stack, "wsv0000001") == before and approvals(stack, "wsv0000001") == 0


def test_the_audit_page_lists_each_action_with_its_actor(chromium: Any, stack: Stack) -> None:
    """The audit lists the module's human acts with their actors (claims, approvals, first approvals,
    rejections, reveals, logins), filters by actor, and exports the same as CSV."""
    page = login(chromium, stack, "ada")
    page.goto(f"{stack.web_url}/audit")
    rows = page.locator("tr.audit-row")
    seen = {(rows.nth(i).get_attribute("data-action"), rows.nth(i).get_attribute("data-actor"))
            for i in range(rows.count())}
    for expected in [("claim", "user:alice"), ("review_approve", "user:alice"), ("review_reject", "user:alice"),
                     ("review_first", "user:sam"), ("review_approve", "user:sue"), ("reveal", "user:alice"),
                     ("login", "user:vic"), ("login_failed", "anonymous"), ("user_add", "os:test")]:
        assert expected in seen, (expected, sorted(seen, key=str))
    shot(page, "audit")
    page.get_by_label("Who").fill("user:sue")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    actors = {rows.nth(i).get_attribute("data-actor") for i in range(rows.count())}
    assert actors == {"user:sue"}
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    text = Path(download.value.path()).read_text()
    assert text.splitlines()[0].startswith("when_utc,actor,action")
    assert ",user:sue,review_approve,done,wsf0000001," in text and "user:alice" not in text


def test_logins_are_rate_limited(stack: Stack) -> None:
    """After web.login_max_failures (3 here) wrong passwords for a name, even the right one is refused
    (429) until the window passes; the refusals are in the audit."""
    session = requests.Session()

    def attempt(password: str) -> requests.Response:
        page = session.get(f"{stack.web_url}/login", timeout=10)
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        return session.post(f"{stack.web_url}/login", data={"username": "ada", "password": password,
                                                            "csrf": token[1]}, timeout=10, allow_redirects=False)

    assert [attempt("wrong password!").status_code for _ in range(3)] == [401, 401, 401]
    refused = attempt(PASSWORD)
    assert refused.status_code == 429 and "too many failed logins" in refused.text
    with stack.ledger.engine.connect() as conn:  # recorded before the answer was sent
        refusals = conn.exec_driver_sql("SELECT count(*) FROM workspace_events WHERE action = 'login_refused'")
        assert refusals.scalar_one() == 1


def test_single_sign_on_logs_a_known_user_in(chromium: Any, stack: Stack, provider: Provider) -> None:
    """Through the provider (authorization code with PKCE, the ID token checked against its keys) a user
    known to vipflow lands on the queue with vipflow's role; the login is in the audit as oidc."""
    provider.user = "olga"
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{stack.web_url}/queue")
    page.get_by_role("link", name="Log in with the test provider").click()
    page.wait_for_url(re.compile("/queue"))
    assert "olga" in page.locator("header").inner_text() and "reviewer" in page.locator("header").inner_text()
    assert provider.tokens_issued >= 1
    with stack.ledger.engine.connect() as conn:
        method = conn.exec_driver_sql("SELECT data FROM workspace_events WHERE action = 'login' AND actor = "
                                      "'user:olga'").scalar_one()
    assert "oidc" in str(method)
    context.close()


def test_single_sign_on_refuses_a_stranger_and_a_forged_answer(chromium: Any, stack: Stack,
                                                               provider: Provider) -> None:
    """A person the provider knows but vipflow does not is refused, naming the command that adds them; an
    answer with a state this browser never started is refused too; neither gets a session."""
    provider.user = "stranger"
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{stack.web_url}/login")
    page.get_by_role("link", name="Log in with the test provider").click()
    page.wait_for_load_state()
    alert = page.locator("[role=alert]").inner_text()
    assert "no active workspace user 'stranger'" in alert and "--no-password" in alert
    page.goto(f"{stack.web_url}/login/oidc/callback?code=abc&state=forged")
    assert "(state)" in page.locator("[role=alert]").inner_text()
    page.goto(f"{stack.web_url}/queue")
    assert "/login" in page.url
    context.close()


def test_a_vip_refusal_keeps_it_queued_and_shows_vips_error_body(chromium: Any, stack: Stack) -> None:
    """VIP Connect answering the approval with 400: the reviewer is told it stays in review, and the
    transaction page shows the failed approval step with VIP's status and error body."""
    in_review(stack, "wse0000001", "2900.00", 61)
    assert stack.sim is not None
    stack.sim.faults({"transaction_id": "wse0000001", "endpoint": "approve", "responses": [400]})
    page = login(chromium, stack, "alice")
    decide(page, stack, "wse0000001", "approve", "verified_patron")
    assert "stays in review" in page.locator(".flash").inner_text()
    assert stack.record("wse0000001")["state"] == "review"  # type: ignore[index]
    vip = page.locator("section[aria-labelledby=h-vip]").inner_text()
    assert "approve" in vip and "failed" in vip and "400" in vip and "errorCode" in vip, vip
    assert approvals(stack, "wse0000001") == 0
