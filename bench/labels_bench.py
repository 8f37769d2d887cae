"""Outcome labels at scale: ``vipflow labels import`` and ``vipflow rules report`` on N transactions in a
PostgreSQL ledger, each run as an operator would (a child process), with its rate and peak memory.

Creates a database of its own (default ``vipflow_bench_labels`` on the local server, dropped and created
again, migrated with the project's migrations), seeds N decided transactions with psycopg's COPY (their
current rows with the ``record`` JSON the worker writes: a few decision shapes of the shipped rules'
ids, deposits and withdrawals, approved, reviewed and rejected), writes the simulator's labels CSV for
them (``producers/sim/labels.py``), imports it (one database transaction), and reports. Not part of
``make bench`` (no target: these are the figures an operator sizes a monthly import and report with).

    python bench/labels_bench.py [--count 200000] [--database postgresql+psycopg://...] [--keep-db]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from producers.sim.labels import write_labels  # noqa: E402
from worker.ledger.schema import create_database, make_engine  # noqa: E402

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/vipflow_bench_labels"
# (type, state, outcome, matched rules with their outcomes, facts)
SHAPES = (
    ("deposit", "approved", "approve", [("standard-deposit", "approve")], {"fund_transfer_type": "ACH"}),
    ("deposit", "review", "review", [("frequent-deposits", "review"), ("standard-deposit", "approve")], {}),
    ("deposit", "rejected", "reject", [("above-remaining-daily-deposit", "reject"), ("standard-deposit", "approve")],
     {}),
    ("withdraw", "approved", "approve", [("standard-withdrawal", "approve")], {"fund_transfer_type": "ACH"}),
    ("withdraw", "approved", "approve", [("standard-withdrawal", "approve")], {"fund_transfer_type": "INP"}),
    ("withdraw", "review", "review", [("large-withdrawal", "review")], {"fund_transfer_type": "SDA"}),
    ("withdraw", "rejected", "reject", [("account-not-in-good-standing", "reject")],
     {"account": {"is_in_good_standing": False}}),
)
WEIGHTS = (9, 1, 1, 7, 1, 2, 1)


def _copy(value: str) -> str:
    return value.replace("\\", "\\\\")


def seed(url: str, count: int) -> None:
    """COPY ``count`` decided transactions into the ledger at ``url``."""
    import psycopg

    rng = random.Random(1)
    now = time.time()
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as conn, conn.cursor() as cur:
        with cur.copy("COPY transactions (transaction_id, state, transaction_type, amount, outcome, ruleset_hash, "
                      "deliveries, seq, record, created_at, updated_at) FROM STDIN") as copy:
            for i in range(count):
                kind, state, outcome, matched, facts = rng.choices(SHAPES, WEIGHTS)[0]
                txid = f"bench{i:012d}"
                amount = f"{rng.randint(1000, 300000) / 100:.2f}"
                digest = "d" * 64 if kind == "deposit" else "w" * 64
                decision = {"outcome": outcome, "matched": [{"id": r, "description": "", "outcome": o}
                                                            for r, o in matched],
                            "used_default": False, "ruleset": kind, "version": 2, "content_hash": digest,
                            "freeze": False}
                created = now - rng.uniform(0, 30 * 86_400)
                record = {"transaction_id": txid, "transaction_type": kind, "amount": amount, "state": state,
                          "decision": decision, "facts": {**facts, "amount": amount}, "created_at": created}
                copy.write(f"{txid}\t{state}\t{kind}\t{amount}\t{outcome}\t{digest}\t1\t3\t"
                           f"{_copy(json.dumps(record, separators=(',', ':')))}\t{created}\t{created}\n")
        cur.execute("ANALYZE transactions")


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of one child process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
        _pid, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory, not the largest so far
        proc.returncode = os.waitstatus_to_exitcode(status)
        took = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[2:])} failed ({proc.returncode}): {err.read().strip()[-500:]}")
        return took, usage.ru_maxrss / 1024, out.read()


def main() -> int:
    """Seed, write the labels, import them, report; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--database", default=os.environ.get("VIPFLOW_BENCH_LABELS_DATABASE", DEFAULT_DB))
    parser.add_argument("--keep-db", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    create_database(args.database, fresh=True, migrate=True)
    start = time.perf_counter()
    seed(args.database, args.count)
    print(f"seeded {args.count:,} decided transactions in {time.perf_counter() - start:.1f} s")
    engine = make_engine(args.database)
    start = time.perf_counter()
    text, counts = write_labels(engine, seed=1)
    engine.dispose()
    print(f"simulator's labels CSV: {sum(counts.values()):,} labels in {time.perf_counter() - start:.1f} s "
          f"({', '.join(f'{k} {v}' for k, v in counts.most_common(6))}, ...)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIPFLOW_")}
    env.update({"PYTHONPATH": str(ROOT), "VIPFLOW_DATABASE__URL": args.database})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.csv"
        path.write_text(text, encoding="utf-8")
        took, rss, out = timed([sys.executable, "-m", "producers", "labels", "import", str(path), "--json"], env)
        print(f"labels import: {json.loads(out)['recorded']:,} labels in {took:.1f} s "
              f"({json.loads(out)['recorded'] / took:,.0f}/s), peak RSS {rss:.0f} MB")
    took, rss, out = timed([sys.executable, "-m", "producers", "rules", "report", "--json"], env)
    doc = json.loads(out)
    print(f"rules report: {doc['transactions']:,} transactions ({doc['labelled']:,} labelled) in {took:.1f} s "
          f"({doc['transactions'] / took:,.0f}/s), peak RSS {rss:.0f} MB")
    if not args.keep_db:
        from sqlalchemy import create_engine
        from sqlalchemy import text as sql
        from sqlalchemy.engine import make_url

        name = make_url(args.database).database
        admin = create_engine(make_url(args.database).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
