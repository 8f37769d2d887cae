"""Rule evaluation benchmark for the shipped rule sets (rules/default).

Prints decisions per second on one core through durable_rules (RuleBook.decide,
fact preparation included) and through the plain-Python oracle, for realistic
varied deposit and withdraw facts (approve, review and reject mixed), then the
RSS before and after N evaluations through durable_rules and its growth.
Targets: 10,000 decisions/s through durable_rules; RSS growth under 10 MB.
The rate target is judged per CPU second of the one benchmark thread (one
core), so other load on a shared machine does not decide it; the wall-clock
rate is printed beside it. Exit 1 when a target is missed.

    python bench/rules_bench.py [--evaluations 1000000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rules.book import RuleBook, load_rulebook, oracle_book  # noqa: E402

TARGET_RATE = 10_000
TARGET_GROWTH_MB = 10.0
SAMPLES = 4_000  # distinct fact sets, cycled


def rss_mb() -> float:
    """This process's resident set size, from /proc/self/status (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _cents(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randint(low * 100, high * 100)) / 100


def _maybe(rng: random.Random, value: Any, unknown: float = 0.05) -> Any:
    return None if rng.random() < unknown else value


def facts_for(kind: str, rng: random.Random) -> dict[str, Any]:
    """One realistic notification's facts: mostly healthy, with the shipped rules' concerns varied."""
    product = rng.choices(["preferred", "online", "other"], [60, 38, 2])[0]
    amount = _cents(rng, 5, 3_000) if rng.random() < 0.9 else _cents(rng, 3_000, 20_000)
    facts: dict[str, Any] = {
        "transaction_type": kind,
        "transaction_id": f"T{rng.randint(1, 10**9)}",
        "amount": amount,
        "product_type": _maybe(rng, product, 0.02),
        "fund_transfer_type": _maybe(rng, rng.choices(["ACH", "SDA", "INP", "XYZ"], [60, 20, 18, 2])[0], 0.02),
        "account": {
            "found": _maybe(rng, rng.random() < 0.95),
            "is_in_good_standing": _maybe(rng, rng.random() < 0.93),
            "available_amount": _maybe(rng, _cents(rng, 500, 20_000)),
        },
        "bank": {"found": True, "instant_payment_eligible": _maybe(rng, rng.random() < 0.7, 0.1),
                 "available_amount": _maybe(rng, _cents(rng, 500, 20_000))},
        "wallet": {"balance": _maybe(rng, _cents(rng, 100, 20_000))},
        "velocity": {"attempts": {"count_1h": rng.choices([0, 1, 2, 5], [70, 20, 8, 2])[0],
                                  "count_24h": rng.choices([0, 1, 2, 3], [60, 25, 10, 5])[0]},
                     "committed": {"amount_24h": _cents(rng, 0, 8_000)}},
    }
    if kind == "deposit":
        facts["limits"] = {"min_deposit": Decimal("10.00"), "max_deposit": Decimal("99999.99"),
                           "remaining_daily_deposit": _cents(rng, 1_000, 10_000)}
    else:
        facts["limits"] = {"min_withdraw": Decimal("10.00"), "max_withdraw": Decimal("999999.99")}
    return facts


def samples(seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """A fixed mix of deposit and withdraw facts."""
    rng = random.Random(seed)
    return [(kind, facts_for(kind, rng)) for kind in rng.choices(["deposit", "withdraw"], k=SAMPLES)]


def rate(book: RuleBook, cases: Sequence[tuple[str, Mapping[str, Any]]], seconds: float) -> tuple[float, float]:
    """Decisions per wall-clock second and per CPU second of this one thread, over about ``seconds``."""
    done, start, cpu = 0, time.perf_counter(), time.thread_time()
    while True:
        for kind, facts in cases:
            book.decide(kind, facts)
        done += len(cases)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed, done / (time.thread_time() - cpu)


def main() -> int:
    """Run the benchmark and print the figures; exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluations", type=int, default=1_000_000, help="evaluations for the RSS check")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per throughput measurement")
    args = parser.parse_args()
    rules = ROOT / "rules" / "default"
    durable, oracle = load_rulebook(rules), oracle_book(rules)
    cases = samples()
    outcomes = Counter(durable.decide(kind, facts).outcome for kind, facts in cases)
    mismatches = sum(durable.decide(k, f) != oracle.decide(k, f) for k, f in cases)
    mix = ", ".join(f"{o} {100 * outcomes[o] / len(cases):.0f}%" for o in ("approve", "review", "reject"))
    print(f"rule sets: {rules.relative_to(ROOT)} ({', '.join(sorted(durable.rulesets))}); "
          f"{len(cases)} distinct fact sets: {mix}; durable_rules vs oracle mismatches: {mismatches}")

    rate(durable, cases[:500], 0.5)  # warm up
    durable_wall, durable_cpu = rate(durable, cases, args.seconds)
    oracle_wall, oracle_cpu = rate(oracle, cases, args.seconds)
    # One thread uses one core; per CPU second is the per-core figure even on a busy shared machine.
    ok_rate = durable_cpu >= TARGET_RATE
    print(f"durable_rules: {durable_cpu:,.0f} decisions per CPU second on one core ({durable_wall:,.0f}/s wall clock; "
          f"RuleBook.decide, facts prepared)  target >= {TARGET_RATE:,}: {'PASS' if ok_rate else 'FAIL'}")
    print(f"python oracle: {oracle_cpu:,.0f} decisions per CPU second on one core ({oracle_wall:,.0f}/s wall clock)")

    before = rss_mb()
    start, cpu = time.perf_counter(), time.thread_time()
    remaining = args.evaluations
    while remaining > 0:
        for kind, facts in cases[:remaining]:
            durable.decide(kind, facts)
        remaining -= min(remaining, len(cases))
    elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
    after = rss_mb()
    growth = after - before
    ok_rss = growth < TARGET_GROWTH_MB
    print(f"RSS: {before:.1f} MB before, {after:.1f} MB after {args.evaluations:,} evaluations through "
          f"durable_rules ({elapsed:.0f} s wall, {args.evaluations / cpu:,.0f} per CPU second); "
          f"growth {growth:+.2f} MB  target < {TARGET_GROWTH_MB:.0f} MB: "
          f"{'PASS' if ok_rss else 'FAIL'}")
    return 0 if ok_rate and ok_rss and not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
