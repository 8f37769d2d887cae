"""Finding the patron of a withdrawal that names none (VIP's documented shape): the notification's
PatronId, else the session's patron, else the VIP card's patron learned in the ledger, else the
wallet's; else review saying the patron is unknown. The source is recorded on the freeze step."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
import redis

from rules import RuleBook
from tests.conftest import archived_note
from tests.unit.test_pipeline_flow import CARD, PATRON, World, _account, _deps, archive, book, deposit, withdraw
from worker.errors import WalletError
from worker.ledger import Ledger, State, TransactionRecord
from worker.ledger.patron_cards import CardSeen, PatronCards
from worker.ledger.sessions import PatronSession, SessionStore
from worker.patron import UNKNOWN_PATRON
from worker.pipeline import process
from worker.store.archive import Archive
from worker.vip.fake import FakeVip
from worker.wallet.fake import InMemoryWallet

__all__ = ["book"]  # the rule book fixture, shared with the pipeline flow's tests

OTHER_CARD = "7210611111"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_ledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    """A ledger on SQLite, then on PostgreSQL (the card is learned by each dialect's write)."""
    url = str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))
    with Ledger.open(url) as led:
        yield led


@pytest.fixture
def world(redis_url: str, book: RuleBook, any_ledger: Ledger) -> Iterator[World]:
    """The pipeline with fakes of VIP and the wallet; the wallet knows no card until a test says so."""
    client = redis.Redis.from_url(redis_url)
    vip = FakeVip({CARD: _account(), OTHER_CARD: _account(vipCardNumber=OTHER_CARD)})
    wallet = InMemoryWallet({PATRON: Decimal("10000.00"), "P0009999": Decimal("10000.00")})
    yield World(_deps(client, vip, wallet, book, any_ledger), vip, wallet, Archive(client, "t"), client, any_ledger)
    client.close()


def documented(txid: str, amount: str = "100.00", card: str = CARD) -> dict[str, Any]:
    """A withdrawal as VIP documents it: no PatronId."""
    body = withdraw(txid, amount)
    body.pop("patronId")
    body["vipCardNumber"] = card
    return body


def freeze_source(rec: TransactionRecord) -> Any:
    started = next(a for a in rec.actions if a.name == "freeze" and a.status == "started")
    return (started.result or {}).get("patron_source")


def test_a_deposit_teaches_the_card_and_a_documented_withdrawal_is_frozen_for_its_patron(world: World) -> None:
    """After a deposit naming card and patron, a withdrawal naming only the card is frozen for that patron,
    found in the ledger: the wallet is not asked."""
    assert process(archive(world, "deposit", deposit("pfdep00001")), world.deps) is not None
    assert PatronCards(world.ledger.engine).patron_of(CARD) == PATRON
    rec = process(archive(world, "withdraw", documented("pfwd000001")), world.deps)
    assert rec is not None and rec.state == State.APPROVED, rec.review_reason if rec else None
    assert world.wallet.holds()["pfwd000001"].patron_id == PATRON
    assert world.wallet.captures["pfwd000001"] == 1
    assert freeze_source(rec) == "ledger"
    assert world.wallet.card_lookups[CARD] == 0


def test_an_unlearned_card_is_asked_of_the_wallet(world: World) -> None:
    """A card no notification named with its patron: the wallet names the patron, the source says so."""
    world.wallet.set_card(CARD, PATRON)
    rec = process(archive(world, "withdraw", documented("pfwd000002")), world.deps)
    assert rec is not None and rec.state == State.APPROVED, rec.review_reason
    assert freeze_source(rec) == "wallet" and world.wallet.card_lookups[CARD] == 1
    assert rec.facts is not None and rec.facts["wallet"]["balance"] is not None


def test_an_unknown_card_goes_to_review_saying_the_patron_is_unknown(world: World) -> None:
    """No PatronId, no session, a card never learned and unknown to the wallet: review with the reason,
    nothing held, nothing approved at VIP."""
    rec = process(archive(world, "withdraw", documented("pfwd000003", card=OTHER_CARD)), world.deps)
    assert rec is not None and rec.state == State.REVIEW
    assert UNKNOWN_PATRON in (rec.review_reason or "")
    assert "pfwd000003" not in world.wallet.holds() and world.vip.approvals.get("pfwd000003", 0) == 0


def test_the_notifications_own_patron_comes_first(world: World) -> None:
    """A withdrawal naming its patron is frozen for that patron even when the card was learned for another."""
    process(archive(world, "deposit", deposit("pfdep00004")), world.deps)
    body = {**withdraw("pfwd000004"), "patronId": "P0009999"}
    rec = process(archive(world, "withdraw", body), world.deps)
    assert rec is not None and rec.state == State.APPROVED, rec.review_reason
    assert world.wallet.holds()["pfwd000004"].patron_id == "P0009999" and freeze_source(rec) == "notification"


def test_the_sessions_patron_comes_before_the_learned_card(world: World) -> None:
    """An open session for the transaction names the patron before the card's learned patron does."""
    process(archive(world, "deposit", deposit("pfdep00005")), world.deps)
    store = SessionStore(world.ledger.engine)
    store.reserve(PatronSession(transaction_id="pfwd000005", status="opening", patron_kind="existing",
                                patron_id="P0009999", vip_card_number=CARD, transaction_type="withdraw",
                                amount=Decimal("100.00")))
    store.mark_open("pfwd000005", "vip-pfwd000005")
    rec = process(archive(world, "withdraw", documented("pfwd000005")), world.deps)
    assert rec is not None and rec.state == State.APPROVED, rec.review_reason
    assert world.wallet.holds()["pfwd000005"].patron_id == "P0009999" and freeze_source(rec) == "session"


class BrokenLookupWallet(InMemoryWallet):
    """A wallet whose card lookup answers something unusable (not a transient failure)."""

    def patron_for_card(self, vip_card_number: str) -> str | None:
        raise WalletError("wallet patron lookup: HTTP 200 without a patron_id")


def test_a_wallet_that_cannot_name_the_patron_sends_to_review_saying_so(world: World) -> None:
    """A wallet whose lookup fails for good: review naming the wallet's failure, never approved."""
    wallet = BrokenLookupWallet({PATRON: Decimal("10000.00")})
    deps = replace(world.deps, wallet=wallet)
    rec = process(archive(world, "withdraw", documented("pfwd000006")), deps)
    assert rec is not None and rec.state == State.REVIEW
    assert "could not name the VIP card's patron" in (rec.review_reason or "")
    assert world.vip.approvals.get("pfwd000006", 0) == 0


def _write(ledger: Ledger, txid: str, card: CardSeen) -> None:
    note = archived_note(card.entry_id, txid, received_at_ms=card.received_at_ms)
    ledger.write(None, TransactionRecord(transaction_id=txid), notification=note, card=card)


def test_a_card_is_relearned_only_from_a_newer_notification(any_ledger: Ledger) -> None:
    """A card's patron changes when a newer notification names another one, never from an older one; an
    unchanged card is not rewritten."""
    cards = PatronCards(any_ledger.engine)
    _write(any_ledger, "pfcard0001", CardSeen(CARD, "P1", "1700000000000-0", 1_700_000_000_000))
    _write(any_ledger, "pfcard0002", CardSeen(CARD, "P2", "1700000000005-0", 1_700_000_000_005))
    assert cards.patron_of(CARD) == "P2"
    _write(any_ledger, "pfcard0003", CardSeen(CARD, "P1", "1700000000001-0", 1_700_000_000_001))
    assert cards.patron_of(CARD) == "P2"
    assert cards.patron_of(OTHER_CARD) is None
