"""The simulated traffic: spread over many patrons, in the same proportions every run."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from decimal import Decimal

import pytest

from producers.sim.patrons import PATRONS, UNKNOWN_CARD
from producers.sim.sender import notification_mix, random_notification
from producers.sim.traffic import SCENARIOS, deal

DECK = sum(s.weight for s in SCENARIOS)


def _field(body: dict[str, object], name: str) -> object:
    return body.get(name, body.get(name[0].lower() + name[1:]))


def test_whole_decks_give_the_same_mix_whatever_the_seed() -> None:
    """Two runs of two decks each, with different seeds, deal exactly the same scenarios."""
    first = Counter(s.name for s, _ in deal(random.Random(1), 2 * DECK))
    second = Counter(s.name for s, _ in deal(random.Random(2), 2 * DECK))
    assert first == second == Counter({s.name: 2 * s.weight for s in SCENARIOS})


def test_the_mix_is_mostly_approvals_with_reviews_and_rejects() -> None:
    """Against the shipped rules the deck expects a majority of approvals, and some reviews and rejects."""
    expect = Counter(s.expect for s in SCENARIOS for _ in range(s.weight))
    assert expect["approve"] > DECK / 2 and expect["review"] >= 2 and expect["reject"] >= 2


def test_traffic_spreads_over_many_cards() -> None:
    """Most notifications come from distinct patrons, so velocity rules stay the exception."""
    notes = notification_mix(random.Random(5), 200)
    cards = Counter(str(_field(body, "VipCardNumber")) for _, body in notes)
    seeded = {p.vip_card_number for p in PATRONS} | {UNKNOWN_CARD}
    crowd = [card for card in cards if card not in seeded]
    assert sum(cards[c] for c in crowd) >= 0.75 * len(notes)
    assert len(crowd) >= 0.95 * sum(cards[c] for c in crowd)  # hardly any card twice


def test_amounts_have_two_decimals_and_locations_are_not_loopback() -> None:
    """Amounts are whole cents written with two decimals; a patron's location is a (documentation) public IP."""
    for _, body in notification_mix(random.Random(9), 2 * DECK):
        amount = Decimal(str(_field(body, "Amount")))
        assert amount == amount.quantize(Decimal("0.01")) and len(str(_field(body, "Amount")).split(".")[1]) == 2
        assert not ipaddress.ip_address(str(_field(body, "Location"))).is_loopback


def test_one_transaction_type_only() -> None:
    """Asking for deposits only gives deposits; asking for no known type is refused with a message."""
    assert {kind for kind, _ in notification_mix(random.Random(3), 30, ["deposit"])} == {"deposit"}
    assert random_notification(random.Random(3), ["withdraw"])[0] == "withdraw"
    with pytest.raises(ValueError, match="deposit and/or withdraw"):
        notification_mix(random.Random(3), 5, ["error"])


def test_every_scenario_gets_its_expected_outcome_from_the_shipped_rules() -> None:
    """Each scenario, drawn many times and enriched as the simulator answers (no velocity yet), is decided
    as its ``expect`` says by rules/default."""
    from producers.sim.patrons import find, inquiry_response, wallet_balances
    from producers.sim.sender import build_notification
    from producers.sim.wire import dumps
    from rules import load_rulebook
    from tests.conftest import ROOT
    from worker.config import Settings
    from worker.facts import Enrichment, build_facts
    from worker.notification import decode_body, parse_notification
    from worker.store.velocity import Velocity
    from worker.vip.models import AccountInquiry

    book, balances, limits = load_rulebook(ROOT / "rules" / "default"), wallet_balances(), Settings().limits
    quiet = Velocity(counts={"1h": 0, "24h": 0}, amounts={"1h": Decimal(0), "24h": Decimal(0)})
    rng = random.Random(11)
    for scenario in SCENARIOS:
        for _ in range(25):
            drawn = scenario.draw(rng)
            body = build_notification(drawn.patron, scenario.kind, drawn.amount, rng=rng, bank_index=drawn.bank_index,
                                      fund_transfer_type=drawn.fund_transfer_type)
            note = parse_notification(decode_body(dumps(body)), scenario.kind)  # type: ignore[arg-type]
            known = find(drawn.patron.vip_card_number)
            account = AccountInquiry.from_response(inquiry_response(known)) if known else AccountInquiry.not_found()
            facts = build_facts(note, Enrichment(account, balances.get(drawn.patron.patron_id), quiet), limits)
            decision = book.decide(scenario.kind, facts)
            assert decision.outcome == scenario.expect, (scenario.name, str(drawn.amount), decision.matched_ids)


def _has_patron_id(body: dict[str, object]) -> bool:
    return any(key.lower() == "patronid" for key in body)


def test_by_default_withdrawals_have_vips_documented_shape_in_every_casing_and_encoding() -> None:
    """The simulated traffic sends withdrawals without PatronId (as VIP's Handle Withdrawals page shows them),
    in both key casings and both number encodings; deposits keep it."""
    notes = notification_mix(random.Random(21), 2 * DECK)
    withdrawals = [body for kind, body in notes if kind == "withdraw"]
    assert withdrawals and not any(_has_patron_id(body) for body in withdrawals)
    assert all(_has_patron_id(body) for kind, body in notes if kind == "deposit")
    casings = {"TransactionId" in body for body in withdrawals}
    encodings = {isinstance(body.get("Amount", body.get("amount")), str) for body in withdrawals}
    assert casings == {True, False} and encodings == {True, False}


def test_rich_withdrawals_carry_the_patron_id() -> None:
    """With ``rich`` every withdrawal names its patron too."""
    notes = notification_mix(random.Random(21), DECK, rich=True)
    assert all(_has_patron_id(body) for _, body in notes)


@pytest.mark.parametrize("argv", [["sim", "--rich"], ["sim", "--send", "--file", "x.json", "--rich"]])
def test_rich_goes_only_with_sending_random_notifications(argv: list[str], capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``--rich`` without ``--send N`` (or with ``--file``) is a usage error: one line, exit 2."""
    from producers.cli import main
    from producers.exits import EXIT_USAGE

    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "--rich goes with --send N" in err and len(err.splitlines()) == 1
