"""The review workspace's service (worker.review_workspace) on a SQLite ledger and a real Redis, with the
VIP and wallet fakes: claims that bind and lapse, claim next, limits and four eyes decided under the
transaction lock, reasons, reveals recorded, the audit and its CSV."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import redis

from rules import load_rulebook
from tests.conftest import FIXTURES, ROOT
from worker import review_audit
from worker import review_workspace as ws
from worker.config import ReviewSettings, Settings
from worker.errors import InputError
from worker.ledger import Ledger, State
from worker.pipeline import Deps, process
from worker.reload import RuleHolder
from worker.review_roles import Forbidden, Reviewer, Role
from worker.store import keys
from worker.store.accounts import AccountCache
from worker.store.archive import Archive
from worker.store.locks import Locks
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry
from worker.wallet.fake import InMemoryWallet

CARD = "7210695258"
PATRON = "P0001234"
PREFIX = "rw"
ALICE = Reviewer("user:alice", Role.REVIEWER)
BOB = Reviewer("user:bob", Role.REVIEWER)
SAM = Reviewer("user:sam", Role.SENIOR)
SUE = Reviewer("user:sue", Role.SENIOR)
VIC = Reviewer("user:vic", Role.VIEWER)


@dataclass
class World:
    deps: Deps
    vip: FakeVip
    wallet: InMemoryWallet
    client: redis.Redis


@pytest.fixture
def world(redis_url: str, sqlite_url: str) -> Iterator[World]:
    client = redis.Redis.from_url(redis_url)
    ledger = Ledger.open(sqlite_url)
    body = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    vip = FakeVip({CARD: AccountInquiry.from_response(body)})
    wallet = InMemoryWallet({PATRON: Decimal("100000.00")})
    path = ROOT / "rules" / "default"
    settings = Settings(review=ReviewSettings(four_eyes_amount=Decimal("5000"), reviewer_limit=Decimal("4000"),
                                              claim_idle_s=60))
    settings = settings.model_copy(update={"redis": settings.redis.model_copy(update={"key_prefix": PREFIX})})
    deps = Deps(settings=settings, archive=Archive(client, PREFIX), ledger=ledger, locks=Locks(client, PREFIX, 30),
                accounts=AccountCache(client, PREFIX, 300), velocity=VelocityStore(client, PREFIX), vip=vip,
                wallet=wallet, rules=RuleHolder(path, book=load_rulebook(path)), sleep=lambda s: None)
    yield World(deps, vip, wallet, client)
    ledger.engine.dispose()
    client.close()


def queued(w: World, txid: str, amount: str) -> None:
    """A withdrawal above 2,500: the shipped rules freeze it and send it to review."""
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / "withdraw-approval-request.json").read_text())
    body.update(transactionId=txid, amount=amount, vipCardNumber=CARD, patronId=PATRON,
                maskedBankAccountNumber="**1111", bankRoutingNumber="22222222")
    entry = w.deps.archive.append("withdraw", json.dumps(body).encode(), status="valid", transaction_id=txid,
                                  error=None)
    rec = process(entry, w.deps)
    assert rec is not None and rec.state == State.REVIEW


def human(w: World, txid: str) -> list[tuple[str | None, str | None, str | None]]:
    return [(e.name, e.status, e.actor) for e in w.deps.ledger.events(txid) if e.kind == "human"]


def state(w: World, txid: str) -> State:
    stored = w.deps.ledger.load(txid)
    assert stored is not None
    return stored.record.state


def test_a_claim_binds_others_until_it_lapses(world: World) -> None:
    """Alice's claim lives review.claim_idle_s in Redis; Bob cannot claim or decide meanwhile; once it lapses
    Bob can. Each claim is a human event."""
    queued(world, "rwc0000001", "3000.00")
    assert ws.claim(world.deps, ALICE, "rwc0000001") == "user:alice"
    key = keys.claim(PREFIX, "rwc0000001")
    assert 0 < world.client.ttl(key) <= 60
    with pytest.raises(Forbidden, match="claimed by user:alice"):
        ws.claim(world.deps, BOB, "rwc0000001")
    with pytest.raises(Forbidden, match="claimed by user:alice"):
        ws.reject(world.deps, BOB, "rwc0000001", "limits")
    assert state(world, "rwc0000001") == State.REVIEW
    world.client.pexpire(key, 1)  # the idle time passes (Redis expires the key itself)
    deadline = time.monotonic() + 5
    while world.client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ws.claim(world.deps, BOB, "rwc0000001") == "user:bob"
    assert [h for h in human(world, "rwc0000001") if h[0] == "claim"] == [
        ("claim", "done", "user:alice"), ("claim", "done", "user:bob")]


def test_claim_next_skips_what_the_reviewer_may_not_decide(world: World) -> None:
    """Claim next passes over one above the reviewer's limit and one someone else holds; None when nothing
    is left; a viewer may not claim."""
    queued(world, "rwn0000001", "4500.00")  # above alice's 4,000 limit
    queued(world, "rwn0000002", "3000.00")
    queued(world, "rwn0000003", "3100.00")
    ws.claim(world.deps, BOB, "rwn0000002")
    assert ws.claim_next(world.deps, ALICE, ws.QueueFilter()) == "rwn0000003"
    assert ws.claim_next(world.deps, ALICE, ws.QueueFilter(transaction_type="deposit")) is None
    assert ws.claim_next(world.deps, SAM, ws.QueueFilter()) == "rwn0000001"
    with pytest.raises(Forbidden, match="viewer may not claim"):
        ws.claim_next(world.deps, VIC, ws.QueueFilter())


def test_four_eyes_first_then_a_different_senior(world: World) -> None:
    """Above review.four_eyes_amount the first approval calls nobody; the same senior, or a reviewer, cannot
    give the second; another senior's approval calls VIP Connect once."""
    queued(world, "rwf0000001", "6000.00")
    rec = ws.approve(world.deps, SAM, "rwf0000001", "verified_patron")
    assert rec.actions[-1].name == "review_first" and rec.state == State.REVIEW
    assert world.vip.approvals["rwf0000001"] == 0
    with pytest.raises(Forbidden, match="you gave the first approval"):
        ws.approve(world.deps, SAM, "rwf0000001", "verified_patron")
    with pytest.raises(Forbidden, match="reviewer may not give the second approval"):
        ws.approve(world.deps, Reviewer("user:rich", Role.REVIEWER, Decimal("99999")), "rwf0000001",
                   "verified_patron")
    rec = ws.approve(world.deps, SUE, "rwf0000001", "known_pattern")
    assert rec.state == State.APPROVED and world.vip.approvals["rwf0000001"] == 1
    assert [h for h in human(world, "rwf0000001") if h[1] == "done"] == [
        ("review_first", "done", "user:sam"), ("review_approve", "done", "user:sue")]


def test_at_the_four_eyes_amount_one_approval_is_enough(world: World) -> None:
    """Exactly review.four_eyes_amount is approved by one senior at once."""
    queued(world, "rwf0000002", "5000.00")
    assert ws.approve(world.deps, SAM, "rwf0000002", "verified_patron").state == State.APPROVED
    assert world.vip.approvals["rwf0000002"] == 1


def test_a_reviewer_within_the_limit_approves_and_above_it_cannot(world: World) -> None:
    """Alice approves 3,000.00 at once; 4,500.00 is refused naming her limit, and nothing is recorded."""
    queued(world, "rwl0000001", "3000.00")
    queued(world, "rwl0000002", "4500.00")
    assert ws.approve(world.deps, ALICE, "rwl0000001", "verified_patron").state == State.APPROVED
    with pytest.raises(Forbidden, match=r"4500\.00 is above your limit of 4000\.00"):
        ws.approve(world.deps, ALICE, "rwl0000002", "verified_patron")
    assert human(world, "rwl0000002") == []


def test_a_decision_needs_a_reason_from_the_list(world: World) -> None:
    """No reason, an unknown one, or 'other' without words is refused; the code and text are kept."""
    queued(world, "rwr0000001", "3000.00")
    for code, text in (("", ""), ("because", ""), ("other", "  ")):
        with pytest.raises(InputError, match="reason"):
            ws.reject(world.deps, ALICE, "rwr0000001", code, text)
    rec = ws.reject(world.deps, ALICE, "rwr0000001", "other", "patron called to cancel")
    assert rec.state == State.REJECTED
    assert world.wallet.holds()["rwr0000001"].status == "released"
    done = next(e for e in world.deps.ledger.events("rwr0000001") if e.name == "review_reject" and e.status == "done")
    assert done.data is not None and done.data["reason_code"] == "other"
    assert done.data["reason"] == "other (say why): patron called to cancel"


def test_a_missing_reason_is_worded_for_the_act(world: World) -> None:
    """The refusal said "a approve needs a reason": now "an approval needs a reason", "a rejection ..."."""
    queued(world, "rwr0000002", "3000.00")
    with pytest.raises(InputError, match=r"\(an approval needs a reason\)$"):
        ws.approve(world.deps, ALICE, "rwr0000002", "")
    with pytest.raises(InputError, match=r"\(a rejection needs a reason\)$"):
        ws.reject(world.deps, ALICE, "rwr0000002", "because")
    assert state(world, "rwr0000002") == State.REVIEW


def test_a_reveal_is_recorded_and_a_viewer_may_not(world: World) -> None:
    """A reveal is a human event naming the field, never its value; a viewer is refused."""
    queued(world, "rwv0000001", "3000.00")
    ws.reveal(world.deps, ALICE, "rwv0000001", "vipCardNumber")
    event = next(e for e in world.deps.ledger.events("rwv0000001") if e.name == "reveal")
    assert (event.actor, event.data) == ("user:alice", {"field": "vipCardNumber"})
    with pytest.raises(Forbidden, match="viewer may not reveal"):
        ws.reveal(world.deps, VIC, "rwv0000001", "vipCardNumber")


def test_the_audit_lists_human_acts_and_its_csv_defuses_formulas(world: World) -> None:
    """The audit has every human act with its actor, newest first, filters by actor; a reason starting
    with '=' is written to the CSV as text."""
    queued(world, "rwa0000001", "3000.00")
    ws.claim(world.deps, ALICE, "rwa0000001")
    ws.reject(world.deps, ALICE, "rwa0000001", "other", "=HYPERLINK(\"http://x\")")
    rows = review_audit.audit(world.deps.ledger.engine, review_audit.AuditFilter(transaction_id="rwa0000001"))
    assert [(r.action, r.status, r.actor) for r in rows][::-1][:1] == [("claim", "done", "user:alice")]
    assert ("review_reject", "done", "user:alice") in [(r.action, r.status, r.actor) for r in rows]
    assert review_audit.audit(world.deps.ledger.engine, review_audit.AuditFilter(actor="user:bob")) == []
    text = "".join(review_audit.to_csv(rows))
    assert "'other (say why): =HYPERLINK" not in text  # the cell starts with "other", no formula
    first = rows[0]
    evil = review_audit.AuditRow(first.at, "user:alice", "review_reject", "done", "rwa0000001", None,
                                 "=cmd()", {})
    assert ",'=cmd()," in "".join(review_audit.to_csv([evil]))


def test_the_queue_filters_and_shows_claims(world: World) -> None:
    """Filters by amount range and rule; each row says who holds a live claim."""
    queued(world, "rwq0000001", "2600.00")
    queued(world, "rwq0000002", "3600.00")
    ws.claim(world.deps, ALICE, "rwq0000002")
    rows = ws.queue(world.deps, BOB, ws.QueueFilter(min_amount=Decimal("3000")))
    assert [(r.item.transaction_id, r.claimed_by) for r in rows] == [("rwq0000002", "user:alice")]
    assert [r.item.transaction_id for r in ws.queue(world.deps, BOB, ws.QueueFilter(claimed="nobody"))] == [
        "rwq0000001"]
    assert ws.queue(world.deps, BOB, ws.QueueFilter(rule="no-such-rule")) == []
    with pytest.raises(InputError, match="min: 'x'"):
        ws.QueueFilter.parse({"min": "x"})


def test_the_command_line_keeps_four_eyes_too(world: World) -> None:
    """`vipflow review approve`'s gate: above review.four_eyes_amount the first command records a first
    approval, the same actor again is refused, a different actor approves through VIP Connect once."""
    from worker.review_service import approve

    queued(world, "rwk0000001", "6000.00")
    first = approve(world.deps, "rwk0000001", "os:ann", "ok",
                    gate=ws.command_line_gate(world.deps, "os:ann", "rwk0000001"))
    assert first.actions[-1].name == "review_first" and world.vip.approvals["rwk0000001"] == 0
    with pytest.raises(Forbidden, match="you gave the first approval"):
        approve(world.deps, "rwk0000001", "os:ann", "ok", gate=ws.command_line_gate(world.deps, "os:ann",
                                                                                     "rwk0000001"))
    ws.claim(world.deps, ALICE, "rwk0000001")
    with pytest.raises(Forbidden, match="claimed by user:alice in the review workspace"):
        approve(world.deps, "rwk0000001", "os:ben", "ok", gate=ws.command_line_gate(world.deps, "os:ben",
                                                                                     "rwk0000001"))
    ws.release(world.deps, ALICE, "rwk0000001")
    done = approve(world.deps, "rwk0000001", "os:ben", "ok", gate=ws.command_line_gate(world.deps, "os:ben",
                                                                                        "rwk0000001"))
    assert done.state == State.APPROVED and world.vip.approvals["rwk0000001"] == 1
