"""The simulated traffic: which patron sends what, in what proportions.

Real traffic is spread over many patrons, most of them ordinary: so is this. Most
notifications come from the simulator's crowd of 10,000 patrons in good standing
(each with a card of its own, so velocity windows stay as quiet as in production),
and a few from the seeded special cases. Against the shipped rules
(``rules/default``) a deck of :data:`SCENARIOS` gives about 71% approvals, 12%
reviews and 17% rejects, each for a named reason:

==========  ====================================================================
outcome     scenarios (weight in a deck of 24)
==========  ====================================================================
approve     small and medium deposits (8), ACH/SDA withdrawals (7), an instant
            (INP) withdrawal to an eligible bank (1), a VIP Online deposit (1)
review      withdrawals above 2,500.00 (2: ``large-withdrawal``), a card VIP
            does not know (1: ``account-not-found``)
reject      a patron not in good standing (1), INP to a bank that does not
            support it (1), a deposit above the remaining daily deposit (1), a
            withdrawal above the wallet balance (1)
==========  ====================================================================

:func:`deal` deals whole shuffled decks, so every run of the same size has the
same mix; :func:`draw_one` draws one scenario by weight. ``producers.sim.sender``
turns each draw into a notification.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from producers.sim.patrons import CROWD_SIZE, LOW, ONLINE, PREFERRED_BAD, UNKNOWN_CARD, SimPatron, crowd_patron


@dataclass(frozen=True)
class Draw:
    """What one scenario drew: the patron and the notification's particulars."""

    patron: SimPatron
    amount: Decimal
    fund_transfer_type: str = "ACH"
    bank_index: int = 0


@dataclass(frozen=True)
class Scenario:
    """One kind of notification; ``expect`` is its outcome under the shipped rules (documentation and tests)."""

    name: str
    kind: str  # deposit | withdraw
    expect: str  # approve | review | reject
    weight: int
    draw: Callable[[random.Random], Draw]


def _money(rng: random.Random, low: str, high: str) -> Decimal:
    """An amount between ``low`` and ``high`` dollars (inclusive), in whole cents."""
    cents = rng.randint(int(Decimal(low) * 100), int(Decimal(high) * 100))
    return (Decimal(cents) / 100).quantize(Decimal("0.01"))  # two decimals, as VIP sends them


def _crowd(rng: random.Random) -> SimPatron:
    return crowd_patron(rng.randrange(CROWD_SIZE))


def _ach_or_sda(rng: random.Random) -> str:
    return rng.choice(["ACH", "ACH", "SDA"])


# The crowd are PREFERRED_GOOD's twins: available amount 4,500.00, wallet 10,000.00, deposits carry a remaining
# daily deposit of 1,000.00; bank 0 (****9999) does not support instant payment, bank 1 (**1111) does.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("small deposit", "deposit", "approve", 7, lambda r: Draw(_crowd(r), _money(r, "10.00", "500.00"))),
    Scenario("medium deposit", "deposit", "approve", 1, lambda r: Draw(_crowd(r), _money(r, "500.00", "1000.00"))),
    Scenario("VIP Online deposit", "deposit", "approve", 1, lambda r: Draw(ONLINE, _money(r, "10.00", "300.00"))),
    Scenario("small withdrawal", "withdraw", "approve", 6,
             lambda r: Draw(_crowd(r), _money(r, "10.00", "500.00"), _ach_or_sda(r), r.randrange(2))),
    Scenario("medium withdrawal", "withdraw", "approve", 1,
             lambda r: Draw(_crowd(r), _money(r, "500.00", "2500.00"), _ach_or_sda(r), r.randrange(2))),
    Scenario("instant withdrawal", "withdraw", "approve", 1,
             lambda r: Draw(_crowd(r), _money(r, "10.00", "2500.00"), "INP", 1)),
    Scenario("large withdrawal", "withdraw", "review", 2,
             lambda r: Draw(_crowd(r), _money(r, "2500.01", "9000.00"), _ach_or_sda(r), r.randrange(2))),
    Scenario("card unknown to VIP", "deposit", "review", 1,
             lambda r: Draw(replace(_crowd(r), vip_card_number=UNKNOWN_CARD), _money(r, "10.00", "500.00"))),
    Scenario("patron not in good standing", "withdraw", "reject", 1,
             lambda r: Draw(PREFERRED_BAD, _money(r, "10.00", "400.00"), _ach_or_sda(r))),
    Scenario("instant payment to an ineligible bank", "withdraw", "reject", 1,
             lambda r: Draw(_crowd(r), _money(r, "10.00", "2500.00"), "INP", 0)),
    Scenario("deposit above the remaining daily deposit", "deposit", "reject", 1,
             lambda r: Draw(_crowd(r), _money(r, "1000.01", "4500.00"))),
    Scenario("withdrawal above the wallet balance", "withdraw", "reject", 1,
             lambda r: Draw(LOW, _money(r, "20.01", "400.00"), _ach_or_sda(r))),
)


def scenarios_for(kinds: Sequence[str]) -> tuple[Scenario, ...]:
    """The scenarios of these transaction types; ValueError when none is left."""
    chosen = tuple(s for s in SCENARIOS if s.kind in kinds)
    if not chosen:
        raise ValueError(f"no simulated traffic for transaction types {list(kinds)}; use deposit and/or withdraw")
    return chosen


def deck(rng: random.Random, kinds: Sequence[str] = ("deposit", "withdraw")) -> list[Scenario]:
    """One shuffled deck: each scenario as many times as its weight."""
    cards = [s for s in scenarios_for(kinds) for _ in range(s.weight)]
    rng.shuffle(cards)
    return cards


def deal(rng: random.Random, count: int, kinds: Sequence[str] = ("deposit", "withdraw")) -> list[tuple[Scenario, Draw]]:
    """``count`` scenarios dealt from whole shuffled decks (so the mix is the same in every run), each drawn."""
    cards: list[Scenario] = []
    while len(cards) < count:
        cards += deck(rng, kinds)
    return [(s, s.draw(rng)) for s in cards[:count]]


def draw_one(rng: random.Random, kinds: Sequence[str] = ("deposit", "withdraw")) -> tuple[Scenario, Draw]:
    """One scenario chosen by weight, drawn."""
    chosen = scenarios_for(kinds)
    scenario = rng.choices(chosen, weights=[s.weight for s in chosen])[0]
    return scenario, scenario.draw(rng)
