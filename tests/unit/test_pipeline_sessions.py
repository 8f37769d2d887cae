"""The pipeline with patron sessions: sessions.required decides what a notification without one means."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest
import redis

from rules import load_rulebook
from tests.conftest import ROOT
from tests.unit.test_pipeline_flow import CARD, PATRON, World, _account, _deps, archive, deposit, withdraw
from worker.config import Settings
from worker.ledger import Ledger, State
from worker.ledger.sessions import PatronSession, SessionStore
from worker.pipeline import process
from worker.store.archive import Archive
from worker.vip.fake import FakeVip
from worker.wallet.fake import InMemoryWallet


@pytest.fixture
def world(redis_url: str, ledger: Ledger) -> Iterator[World]:
    """The pipeline flow's world: the fakes of VIP and the wallet, the shipped rules, Redis and a ledger."""
    client = redis.Redis.from_url(redis_url)
    vip = FakeVip({CARD: _account()})
    wallet = InMemoryWallet({PATRON: Decimal("10000.00")})
    book = load_rulebook(ROOT / "rules" / "default")
    yield World(_deps(client, vip, wallet, book, ledger), vip, wallet, Archive(client, "t"), client, ledger)
    client.close()


def _required(w: World, required: bool) -> World:
    return replace(w, deps=replace(w.deps, settings=Settings(sessions={"required": required})))


def _open_session(w: World, txid: str, kind: str, amount: str, patron: str = PATRON) -> None:
    store = SessionStore(w.ledger.engine)
    store.reserve(PatronSession(transaction_id=txid, status="opening", patron_kind="existing", patron_id=patron,
                                vip_card_number="7210695258", transaction_type=kind, amount=Decimal(amount)))
    store.mark_open(txid, f"vip-{txid}")


def test_without_sessions_required_a_notification_never_issued_is_decided_normally(world: World) -> None:
    """sessions.required false: no session is no concern; the deposit is approved, session.found false."""
    rec = process(archive(world, "deposit", deposit("nosess00001")), _required(world, False).deps)
    assert rec is not None and rec.state == State.APPROVED
    assert rec.facts is not None and rec.facts["session"]["found"] is False
    assert rec.facts["session"]["required"] is False


def test_with_sessions_required_a_notification_never_issued_is_reviewed(world: World) -> None:
    """sessions.required true: the same deposit goes to review, matched by session-never-issued."""
    rec = process(archive(world, "deposit", deposit("nosess00002")), _required(world, True).deps)
    assert rec is not None and rec.state == State.REVIEW
    assert "session-never-issued" in [m["id"] for m in (rec.decision or {})["matched"]]
    assert world.vip.approvals.get("nosess00002", 0) == 0


def test_a_withdrawal_without_patron_id_takes_the_sessions_patron(world: World) -> None:
    """No PatronId in the withdrawal: the wallet is asked and frozen for the session's patron."""
    _open_session(world, "sesswd00001", "withdraw", "100.00")
    body = withdraw("sesswd00001")
    body.pop("patronId")
    rec = process(archive(world, "withdraw", body), _required(world, True).deps)
    assert rec is not None and rec.state == State.APPROVED, rec.review_reason if rec else None
    assert world.wallet.holds_created["sesswd00001"] == 1
    assert world.wallet.holds()["sesswd00001"].patron_id == PATRON
    assert rec.facts is not None and rec.facts["wallet"]["balance"] is not None


def test_a_withdrawal_with_neither_patron_id_nor_session_is_not_frozen(world: World) -> None:
    """No PatronId and no session: nothing to freeze for, so it goes to review, never approved."""
    body = withdraw("sesswd00002")
    body.pop("patronId")
    rec = process(archive(world, "withdraw", body), _required(world, False).deps)
    assert rec is not None and rec.state == State.REVIEW
    assert "the patron is unknown" in (rec.review_reason or "")
    assert world.vip.approvals.get("sesswd00002", 0) == 0
