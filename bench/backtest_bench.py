"""Dry-run backtest benchmark: ``vipflow replay --dry-run`` over an archive of 100,000 notifications.

Seeds a Redis database of its own (default db 10, flushed before and after)
with N archived notifications in VIP Connect's shape and their transaction
records, each holding the facts and the decision of the shipped rules, as the
worker stores them. Then runs the real command, ``vipflow replay --dry-run
--since 1970-01-01 --rules <threshold lowered> --json``, in a child process
(selection, MGET reads, decisions and the JSON lines all included) and prints
notifications per second and the total time. Target: 100,000 in under 60 s.
Exit 1 when the target is missed.

    python bench/backtest_bench.py [--count 100000] [--redis redis://127.0.0.1:6379/10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from producers.sim.patrons import PATRONS, inquiry_response  # noqa: E402
from producers.sim.sender import build_notification  # noqa: E402
from rules import load_rulebook  # noqa: E402
from worker.config import Settings  # noqa: E402
from worker.facts import Enrichment, build_facts, facts_for_record  # noqa: E402
from worker.notification import decode_body, parse_notification  # noqa: E402
from worker.store.records import NotificationSeen, TransactionRecord  # noqa: E402
from worker.store.velocity import Velocity  # noqa: E402
from worker.vip.models import AccountInquiry  # noqa: E402

TARGET_S = 60.0
PREFIX = "bench"
AMOUNTS = (25, 40, 80, 150, 150, 400, 400, 900, 1500, 2600, 6000)


def _record(txid: str, kind: str, entry_id: str, received_ms: int, facts: dict[str, Any],
            decision: dict[str, Any]) -> str:
    rec = TransactionRecord(
        transaction_id=txid, transaction_type=kind, amount=str(facts["amount"]),
        notifications=(NotificationSeen(entry_id, kind, "valid", str(received_ms)),),
        state={"approve": "approved", "review": "review", "reject": "rejected"}[decision["outcome"]],
        decision=decision, facts=facts_for_record(facts), deliveries=1,
        created_at=received_ms / 1000, updated_at=received_ms / 1000)
    rec = rec.with_action(*("approve", "done", {"status": "approved"}) if decision["outcome"] == "approve"
                          else ("review", "done", {"reason": "the rules said review"}))
    return json.dumps(rec.to_dict(), separators=(",", ":"), default=str)


def seed(client: redis.Redis, count: int, seed_: int = 7) -> None:
    """Archive ``count`` notifications and store a decided record for each (pipelined)."""
    rng = random.Random(seed_)
    book = load_rulebook(ROOT / "rules" / "default")
    limits = Settings().limits
    accounts = {p.vip_card_number: AccountInquiry.from_response(inquiry_response(p)) for p in PATRONS}
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        patron = PATRONS[0] if rng.random() < 0.7 else rng.choice(PATRONS)  # mostly the good patron
        kind = rng.choice(("deposit", "withdraw"))
        amount = Decimal(rng.choice(AMOUNTS)) + Decimal(rng.randint(0, 99)) / 100
        txid = f"bt{i:010d}"
        body = build_notification(patron, kind, amount, transaction_id=txid, rng=rng)
        raw = json.dumps(body).encode()
        received_ms = 1_700_000_000_000 + i * 10
        entry_id = f"{received_ms}-0"
        pipe.xadd(f"{PREFIX}:archive", {"body": raw, "kind": kind, "received_at": received_ms, "status": "valid",
                                        "transaction_id": txid, "body_sha256": "", "error": ""}, id=entry_id)
        note = parse_notification(decode_body(raw), kind)  # type: ignore[arg-type]
        account = AccountInquiry.not_found() if rng.random() < 0.02 else accounts[patron.vip_card_number]
        velocity = Velocity(counts={w: rng.randint(0, 4) for w in ("1h", "24h")},
                            amounts={w: Decimal(rng.randint(0, 6000)) for w in ("1h", "24h")})
        facts = build_facts(note, Enrichment(account, patron.wallet_balance, velocity), limits)
        decision = book.decide(kind, facts).to_dict()
        pipe.set(f"{PREFIX}:tx:{txid}", _record(txid, kind, entry_id, received_ms, facts, decision))
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()


def main() -> int:
    """Seed, run the dry run as an operator would, print the rate; exit 1 when over the target."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--redis", default=os.environ.get("VIPFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10"))
    args = ap.parse_args()
    client = redis.Redis.from_url(args.redis)
    client.flushdb()
    work = Path(tempfile.mkdtemp(prefix="vipflow-backtest-"))
    try:
        t0 = time.perf_counter()
        seed(client, args.count)
        print(f"seeded {args.count:,} archived notifications and records in {time.perf_counter() - t0:.1f} s")
        rules = work / "rules"
        shutil.copytree(ROOT / "rules" / "default", rules)
        text = (rules / "withdraw.yaml").read_text()
        (rules / "withdraw.yaml").write_text(text.replace("when: {amount: {gt: 2500}}", "when: {amount: {gt: 500}}"))
        env = {**os.environ, "VIPFLOW_REDIS__URL": args.redis, "VIPFLOW_REDIS__KEY_PREFIX": PREFIX,
               "PYTHONPATH": str(ROOT)}
        env.pop("VIPFLOW_CONFIG", None)
        out = work / "out.jsonl"
        t1 = time.perf_counter()
        with out.open("w") as sink:
            code = subprocess.run([sys.executable, "-m", "producers", "replay", "--dry-run", "--since", "1970-01-01",
                                   "--rules", str(rules), "--json"], cwd=ROOT, env=env, stdout=sink,
                                  stderr=subprocess.PIPE, text=True, check=False)
        elapsed = time.perf_counter() - t1
        if code.returncode != 0:
            print(f"vipflow replay --dry-run failed (exit {code.returncode}): {code.stderr[-2000:]}")
            return 1
        lines = out.read_text().splitlines()
        totals = json.loads(lines[-1])["totals"]
        rate = totals["transactions"] / elapsed
        verdict = "PASS" if elapsed < TARGET_S * args.count / 100_000 else "FAIL"
        print(f"backtest: {totals['transactions']:,} notifications in {elapsed:.1f} s "
              f"({rate:,.0f} notifications/s), {totals['differences']:,} differences; "
              f"target 100,000 in < {TARGET_S:.0f} s: {verdict}")
        print(f"outcomes before {totals['before']} after {totals['after']}")
        return 0 if verdict == "PASS" else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        client.flushdb()
        client.close()


if __name__ == "__main__":
    sys.exit(main())
