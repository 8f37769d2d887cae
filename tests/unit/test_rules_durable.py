"""durable_rules 2.0.28's hazards, one test each: vipflow's engine must not trip over any of them."""

from __future__ import annotations

import json
import random
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import durable_rules_engine
import pytest

from rules.book import RuleBook, load_rulebook
from rules.durable import DurableEngine, durable_name, ruleset_definition
from rules.errors import RuleFilesInvalid
from rules.facts import prepare
from rules.loader import load_ruleset_file, parse_ruleset
from rules.model import RuleSet

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "rules" / "default"


def _ruleset(rules: str, version: int = 1) -> RuleSet:
    text = f"ruleset: withdraw\nversion: {version}\ndefault: review\nrules:\n{rules}"
    return parse_ruleset(text.encode(), "withdraw.yaml")


BIG = "  - id: big\n    when: {amount: {gt: 100}}\n    outcome: reject\n"


def _live_facts(engine: DurableEngine) -> list[Any]:
    """The facts durable_rules still holds in vipflow's one session."""
    return json.loads(durable_rules_engine.get_facts(engine._handle, "0"))  # type: ignore[no-any-return]


def test_the_leftover_probe_sees_a_fact_that_was_not_retracted() -> None:
    """get_facts lists a fact asserted and not retracted, so an empty list below means none is left."""
    engine = DurableEngine(_ruleset(BIG, version=901))
    # A fact that matches a rule (durable_rules keeps no fact that matches none).
    document = json.dumps(dict(prepare({"amount": 500}), id="probe", sid="0"))
    durable_rules_engine.assert_fact(engine._handle, document)
    try:
        assert [f["id"] for f in _live_facts(engine)] == ["probe"]
    finally:
        durable_rules_engine.retract_fact(engine._handle, document)
    assert _live_facts(engine) == []


def test_thousands_of_evaluations_raise_nothing_and_leave_no_facts() -> None:
    """3,000 evaluations (past the 1,024-session limit) all decide, and no fact is left in the engine."""
    engine = DurableEngine(_ruleset(BIG, version=902))
    fired = [engine.matched(prepare({"amount": i % 200})) for i in range(3000)]
    assert sum(1 for f in fired if f == {"big"}) == sum(1 for i in range(3000) if i % 200 > 100)
    assert _live_facts(engine) == []


def test_two_identical_facts_in_a_row_both_fire() -> None:
    """The same facts evaluated twice match twice (each evaluation's fact has its own id)."""
    engine = DurableEngine(_ruleset(BIG, version=903))
    facts = prepare({"amount": 500})
    assert engine.matched(facts) == {"big"}
    assert engine.matched(facts) == {"big"}


def test_no_match_is_the_default_not_an_exception() -> None:
    """A fact no rule matches (MessageNotHandled inside the engine) gives the default outcome."""
    book = RuleBook([_ruleset(BIG, version=904)], DurableEngine)
    decision = book.decide("withdraw", {"amount": 5})
    assert (decision.outcome, decision.used_default) == ("review", True)


def test_loading_the_same_ruleset_twice_reuses_its_registration() -> None:
    """Two engines for the same content share one durable_rules ruleset (a name registers once)."""
    first = DurableEngine(_ruleset(BIG, version=905))
    second = DurableEngine(_ruleset(BIG, version=905))
    assert first._handle == second._handle
    assert second.matched(prepare({"amount": 500})) == {"big"}


def test_a_changed_ruleset_loads_beside_the_old_one_and_both_decide() -> None:
    """Hot reload: a new version (new hash, new name) lives beside the old one; each decides by its own rules."""
    old = RuleBook([_ruleset(BIG, version=906)], DurableEngine)
    new = RuleBook([_ruleset(BIG.replace("gt: 100", "gt: 1000"), version=906)], DurableEngine)
    assert durable_name(old.rulesets["withdraw"]) != durable_name(new.rulesets["withdraw"])
    assert old.decide("withdraw", {"amount": 500}).outcome == "reject"
    assert new.decide("withdraw", {"amount": 500}).outcome == "review"
    assert old.decide("withdraw", {"amount": 500}).outcome == "reject"


def test_loading_new_versions_does_not_disturb_decisions_in_flight() -> None:
    """While new versions are registered, a thread deciding with the old version gets its answers."""
    old = RuleBook([_ruleset(BIG, version=907)], DurableEngine)
    wrong: list[int] = []

    def decide_old() -> None:
        for i in range(2000):
            amount = i % 200
            if old.decide("withdraw", {"amount": amount}).outcome != ("reject" if amount > 100 else "review"):
                wrong.append(amount)

    worker = threading.Thread(target=decide_old)
    worker.start()
    for v in range(30):
        RuleBook([_ruleset(BIG.replace("gt: 100", f"gt: {v}"), version=907)], DurableEngine)
    worker.join()
    assert wrong == []


def test_a_rule_whose_any_branches_all_hold_is_counted_once() -> None:
    """A rule with `any` whose branches all hold (durable_rules fires each branch) is matched once."""
    rules = ("  - id: either\n    when: {any: [{amount: {gt: 1}}, {amount: {gt: 2}}, {fund_transfer_type: INP}]}\n"
             "    outcome: review\n")
    book = RuleBook([_ruleset(rules, version=908)], DurableEngine)
    decision = book.decide("withdraw", {"amount": 50, "fund_transfer_type": "INP"})
    assert decision.matched_ids == ("either",)


def test_a_rule_too_complex_for_durable_rules_is_refused_with_its_line_and_id() -> None:
    """A rule past durable_rules' 32-expression limit is a RuleFilesInvalid naming that rule, not an engine error."""
    parts = ", ".join(["{amount: {eq: {field: wallet.balance}}}"] * 12)
    rules = BIG + f"  - id: huge\n    when: {{not: {{all: [{parts}]}}}}\n    outcome: review\n"
    with pytest.raises(RuleFilesInvalid) as info:
        DurableEngine(_ruleset(rules, version=909))
    assert [(p.file, p.line, p.rule_id) for p in info.value.problems] == [("withdraw.yaml", 8, "huge")]
    assert "split it into several rules" in str(info.value)


def _varied_facts(rng: random.Random) -> dict[str, Any]:
    """Realistic withdraw facts with every shipped concern varied (some unknown)."""
    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.1 else value

    return {
        "amount": Decimal(rng.choice([5, 10, 99, 2500, 2501, 7000])) + Decimal(rng.randint(0, 99)) / 100,
        "product_type": maybe(rng.choice(["preferred", "online", "other"])),
        "fund_transfer_type": maybe(rng.choice(["ACH", "SDA", "INP", "XYZ"])),
        "account": {"found": maybe(rng.random() < 0.9), "is_in_good_standing": maybe(rng.random() < 0.9)},
        "bank": {"found": True, "instant_payment_eligible": maybe(rng.random() < 0.5)},
        "wallet": {"balance": maybe(Decimal(rng.randint(0, 1_000_000)) / 100)},
        "limits": {"min_withdraw": Decimal("10.00"), "max_withdraw": Decimal("999999.99")},
        "velocity": {"attempts": {"count_24h": rng.randint(0, 4)},
                     "committed": {"amount_24h": Decimal(rng.randint(0, 800_000)) / 100}},
    }


def test_concurrent_threads_decide_as_sequential_evaluation_does() -> None:
    """8 threads x 2,000 evaluations at once give exactly the sequential decisions."""
    book = load_rulebook(DEFAULT)
    rng = random.Random(2)
    batches = [[_varied_facts(rng) for _ in range(2000)] for _ in range(8)]
    expected = [[book.decide("withdraw", f) for f in batch] for batch in batches]
    got: list[list[Any]] = [[] for _ in batches]

    def run(i: int) -> None:
        got[i] = [book.decide("withdraw", f) for f in batches[i]]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected
    assert {d.outcome for batch in expected for d in batch} == {"approve", "review", "reject"}


def _walk(node: Any) -> Any:
    """Every key and value in a nested JSON document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _walk(v)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)
    else:
        yield node


@pytest.mark.parametrize("name", ["deposit.yaml", "withdraw.yaml"])
def test_the_shipped_rules_never_emit_nex(name: str) -> None:
    """The compiled shipped rulesets contain no $nex (it spins forever in durable_rules 2.0.28)."""
    parts = list(_walk(ruleset_definition(load_ruleset_file(DEFAULT / name))))
    assert "$neq" in parts  # the walk does see operators
    assert "$nex" not in parts and "$ex" not in parts
