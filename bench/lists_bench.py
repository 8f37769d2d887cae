"""Rule decisions with named lists of 100,000 entries against the same decisions without lists, in one run.

The shipped rule sets (rules/default) are measured twice on the same fact sets: as
shipped ("without lists"), and with five more rules per rule set, one per list kind
(``vip_card_number``, ``patron_id``, ``bank_routing_number`` and ``bank_name`` in
lists of 100,000 entries each, ``location`` in a list of 100,000 IP ranges of mixed
prefix lengths, IPv4 and IPv6), about 1 % of the facts on a list ("with lists"). The
two are measured in turns (``--rounds``), each per CPU second of this one thread (one
core), and the best of each is kept; the ratio with / without is judged against the
target: at least 0.8. Also printed: the time to build the lists in memory, the
memory they take, and the time a worker takes to read one list of 100,000 entries
from a ledger (SQLite in a temporary folder) after a change. Exit 1 when a target is
missed or the two engines (durable_rules, the oracle) disagree.

    python bench/lists_bench.py [--entries 100000] [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rules_bench import rss_mb, samples  # noqa: E402

from rules.book import RuleBook, load_rulebook, oracle_book  # noqa: E402
from rules.lists import NamedList  # noqa: E402

TARGET_RATIO = 0.8
HIT_SHARE = 0.01
LIST_RULES = """
  - id: bench-blocked-card
    when: {vip_card_number: {in_list: bench-cards}}
    outcome: reject
  - id: bench-blocked-patron
    when: {patron_id: {in_list: bench-patrons}}
    outcome: reject
  - id: bench-blocked-routing
    when: {bank_routing_number: {in_list: bench-routing}}
    outcome: review
  - id: bench-risky-bank
    when: {bank_name: {in_list: bench-banks}}
    outcome: review
  - id: bench-risky-network
    when: {location: {in_list: bench-nets}}
    outcome: review
"""


def make_lists(entries: int, rng: random.Random) -> dict[str, list[str]]:
    """Five lists of ``entries`` entries each, as people would write them (normalized when built)."""
    cards = {str(rng.randint(10**9, 10**10 - 1)) for _ in range(entries * 2)}
    routing = {f"{rng.randint(10**8, 10**9 - 1)}" for _ in range(entries * 2)}
    nets: set[str] = set()
    while len(nets) < entries:
        if rng.random() < 0.9:
            length = rng.choice((16, 20, 24, 24, 28, 32, 32, 32))
            net = ipaddress.IPv4Network((rng.getrandbits(32), length), strict=False)
        else:
            length = rng.choice((32, 48, 64, 128))
            net = ipaddress.IPv6Network((rng.getrandbits(128), length), strict=False)
        nets.add(str(net))
    return {
        "bench-cards": sorted(cards)[:entries],
        "bench-patrons": [f"P{n:09d}" for n in rng.sample(range(10**9), entries)],
        "bench-routing": sorted(routing)[:entries],
        "bench-banks": [f"Bank of Somewhere {n}" for n in range(entries)],
        "bench-nets": sorted(nets),
    }


def with_identifiers(cases: Sequence[tuple[str, dict[str, Any]]], lists: Mapping[str, list[str]],
                     rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """The fact sets with a card, patron, routing number, bank name and device address each; about
    HIT_SHARE of each on its list."""
    def pick(name: str, fresh: str) -> str:
        return rng.choice(lists[name]) if rng.random() < HIT_SHARE else fresh

    out = []
    for kind, facts in cases:
        nets = lists["bench-nets"]
        if rng.random() < HIT_SHARE:
            network = ipaddress.ip_network(rng.choice(nets))
            location = str(network.network_address + rng.randrange(network.num_addresses))
        else:
            location = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        out.append((kind, dict(facts, vip_card_number=pick("bench-cards", str(rng.randint(10**9, 10**10 - 1))),
                               patron_id=pick("bench-patrons", f"X{rng.randint(0, 10**9)}"),
                               bank_routing_number=pick("bench-routing", f"{rng.randint(10**8, 10**9 - 1)}"),
                               bank_name=pick("bench-banks", rng.choice(["Chase", "Fifth Third Bank", "PNC"])),
                               location=location)))
    return out


def rate(book: RuleBook, cases: Sequence[tuple[str, Mapping[str, Any]]], lists: Mapping[str, NamedList],
         seconds: float) -> float:
    """Decisions per CPU second of this one thread over about ``seconds``."""
    done, start, cpu = 0, time.perf_counter(), time.thread_time()
    while True:
        for kind, facts in cases:
            book.decide(kind, facts, lists)
        done += len(cases)
        if time.perf_counter() - start >= seconds:
            return done / (time.thread_time() - cpu)


def ledger_read(values: list[str]) -> tuple[float, float]:
    """Seconds to import ``values`` into a card list of a fresh SQLite ledger, and for a worker's holder to
    read the list again after a change (what a reload costs)."""
    from worker.ledger import Ledger
    from worker.lists.holder import ListHolder
    from worker.lists.store import ListStore

    folder = tempfile.mkdtemp(prefix="vipflow-lists-bench-")
    try:
        with Ledger.open(f"sqlite:///{folder}/ledger.db") as ledger:
            store = ListStore(ledger.engine)
            store.create("bench-cards", "card", "bench")
            start = time.perf_counter()
            store.import_values("bench-cards", values, "bench")
            imported = time.perf_counter() - start
            holder = ListHolder(store)
            store.add("bench-cards", ["1234567"], "bench")
            start = time.perf_counter()
            holder.check()
            reread = time.perf_counter() - start
            assert holder.current()["bench-cards"].size == len(values) + 1
            return imported, reread
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    """Run the benchmark and print the figures; exit 1 when the ratio is under its target."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000, help="entries per list")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each, taken in turns")
    args = parser.parse_args()
    rng = random.Random(11)
    shipped = ROOT / "rules" / "default"
    folder = Path(tempfile.mkdtemp(prefix="vipflow-lists-rules-"))
    try:
        for rule_file in shipped.glob("*.yaml"):
            if not rule_file.name.endswith("_test.yaml"):
                (folder / rule_file.name).write_text(rule_file.read_text(encoding="utf-8") + LIST_RULES,
                                                     encoding="utf-8")
        plain, listed, oracle = load_rulebook(shipped), load_rulebook(folder), oracle_book(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    before = rss_mb()
    start = time.perf_counter()
    raw = make_lists(args.entries, rng)
    made = time.perf_counter() - start
    start = time.perf_counter()
    kinds = {"bench-cards": "card", "bench-patrons": "patron", "bench-routing": "routing", "bench-banks": "bank",
             "bench-nets": "cidr"}
    lists = {name: NamedList.of(name, kinds[name], values) for name, values in raw.items()}
    built = time.perf_counter() - start
    held = rss_mb() - before
    cases = with_identifiers(samples(), raw, rng)
    mismatches = sum(listed.decide(k, f, lists) != oracle.decide(k, f, lists) for k, f in cases)
    hits = sum(any(m.startswith("bench-") for m in listed.decide(k, f, lists).matched_ids) for k, f in cases)
    print(f"lists: 5 of {args.entries:,} entries each (cards, patrons, routing numbers, bank names, IP ranges "
          f"{sum(':' in n for n in raw['bench-nets']):,} of them IPv6); generated in {made:.1f} s, built in "
          f"{built:.1f} s, about {held:.0f} MB in memory")
    print(f"{len(cases)} fact sets, {hits} of them on a list; durable_rules vs oracle mismatches: {mismatches}")

    rate(plain, cases[:500], {}, 0.5)  # warm up both
    rate(listed, cases[:500], lists, 0.5)
    without: list[float] = []
    with_lists: list[float] = []
    for _ in range(args.rounds):
        without.append(rate(plain, cases, {}, args.seconds))
        with_lists.append(rate(listed, cases, lists, args.seconds))
    best_without, best_with = max(without), max(with_lists)
    ratio = best_with / best_without
    print(f"without lists: {best_without:,.0f} decisions per CPU second on one core (the shipped rules; rounds: "
          + ", ".join(f"{r:,.0f}" for r in without) + ")")
    print(f"with lists: {best_with:,.0f} decisions per CPU second on one core (5 more rules per rule set, lists "
          f"of {args.entries:,}; rounds: " + ", ".join(f"{r:,.0f}" for r in with_lists) + ")")
    ok = ratio >= TARGET_RATIO
    print(f"with / without lists: {ratio:.2f}  target >= {TARGET_RATIO}: {'PASS' if ok else 'FAIL'}")
    imported, reread = ledger_read(raw["bench-cards"])
    print(f"ledger (SQLite): import of {args.entries:,} entries {imported:.1f} s; a worker reads the list again "
          f"after a change in {reread:.2f} s")
    return 0 if ok and not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
