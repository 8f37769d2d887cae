"""Dry-run backtest benchmark: ``vipflow replay --dry-run`` over 1,000,000 notifications in a PostgreSQL ledger.

Creates a database of its own (default ``vipflow_bench_backtest`` on the local server,
dropped and created again, migrated with the project's migrations) and seeds it
with psycopg's COPY: N notifications in VIP Connect's shape and, for each, its
transaction's current row with the ``record`` JSON the worker writes (the facts
it decided on and the decision of the shipped rules). Events are not seeded:
the backtest does not read them. The notifications cycle through a few
thousand distinct fact sets (patrons, amounts, transfer types, velocity and
account answers varied), each decided once while seeding.

Then it runs the real command as an operator would, in a child process:
``vipflow replay --dry-run --since 1970-01-01 --rules <large-withdrawal lowered
to 500> --json`` (reading the ledger page by page, deciding, printing every
difference as a JSON line), and in the same run measures the rules engine's
own decision rate on the same fact sets with the same rules (as
bench/rules_bench.py measures it: ``RuleBook.decide`` in a loop, facts
prepared). It prints both rates, the child's peak memory, and their ratio.
Target: the backtest at no less than half the rules engine's rate (it must be
bound by deciding, not by reading). Exit 1 when the target is missed.

    python bench/backtest_bench.py [--count 1000000] [--database postgresql+psycopg://...] [--keep-db]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rules_bench import rate  # noqa: E402

from producers.sim.patrons import PATRONS, inquiry_response  # noqa: E402
from producers.sim.sender import build_notification  # noqa: E402
from rules import RuleBook, load_rulebook  # noqa: E402
from worker.config import Settings  # noqa: E402
from worker.facts import Enrichment, build_facts, facts_for_record  # noqa: E402
from worker.ledger import NotificationSeen, State, TransactionRecord  # noqa: E402
from worker.notification import decode_body, parse_notification  # noqa: E402
from worker.store.velocity import Tally, Velocity  # noqa: E402
from worker.vip.models import AccountInquiry  # noqa: E402

TARGET_RATIO = 0.5
DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/vipflow_bench_backtest"
PREFIX = "bench"
TEMPLATES = 4000  # distinct fact sets, cycled
AMOUNTS = (25, 40, 80, 150, 150, 400, 400, 900, 1500, 2600, 6000)
BASE_MS = 1_700_000_000_000
# Placeholders in the templates, replaced per row (JSON strings, so a number can take a quoted one's place).
TXID, ENTRY, RECEIVED, AT = "PLACEHOLDERTXID0", "@@ENTRY@@", "@@RECEIVED@@", '"@@AT@@"'  # TXID: a valid id
STATE = {"approve": State.APPROVED, "review": State.REVIEW, "reject": State.REJECTED}
ROW_BATCH = 5000  # rows per COPY write


@dataclass(frozen=True)
class Template:
    """One distinct notification and its decided record, with placeholders for what differs per row."""

    kind: str
    body: bytes  # the raw body, TXID inside
    record: str  # the record JSON, COPY-escaped, with TXID, ENTRY, RECEIVED and AT inside
    amount: str
    outcome: str
    state: str
    content_hash: str
    review_reason: str | None
    facts: dict[str, Any]  # as decided (money as Decimal): the rules engine's rate is measured on these


def _copy_text(value: str) -> str:
    """A value for COPY's text format (compact JSON has no tab or newline; backslashes are doubled)."""
    return value.replace("\\", "\\\\")


def templates(book: RuleBook, count: int = TEMPLATES, seed: int = 7) -> list[Template]:
    """``count`` distinct notifications, each decided once by ``book`` on varied enrichment."""
    rng = random.Random(seed)
    limits = Settings().limits
    accounts = {p.vip_card_number: AccountInquiry.from_response(inquiry_response(p)) for p in PATRONS}
    out: list[Template] = []
    for _ in range(count):
        patron = PATRONS[0] if rng.random() < 0.7 else rng.choice(PATRONS)  # mostly the good patron
        kind = rng.choice(("deposit", "withdraw"))
        amount = Decimal(rng.choice(AMOUNTS)) + Decimal(rng.randint(0, 99)) / 100
        body = build_notification(patron, kind, amount, transaction_id=TXID, rng=rng,
                                  fund_transfer_type=rng.choices(("ACH", "SDA", "INP"), (70, 20, 10))[0],
                                  bank_index=rng.randint(0, 3))
        raw = json.dumps(body).encode()
        note = parse_notification(decode_body(raw), kind)  # type: ignore[arg-type]
        account = AccountInquiry.not_found() if rng.random() < 0.02 else accounts[patron.vip_card_number]
        windows = ("1h", "24h", "7d")
        velocity = Velocity(counts={w: rng.randint(0, 4) for w in windows},
                            amounts={w: Decimal(rng.randint(0, 6000)) for w in windows},
                            approved=Tally({w: rng.randint(0, 2) for w in windows},
                                           {w: Decimal(rng.randint(0, 3000)) for w in windows}),
                            pending=Tally({w: rng.randint(0, 1) for w in windows},
                                          {w: Decimal(rng.randint(0, 1000)) for w in windows}))
        facts = build_facts(note, Enrichment(account, patron.wallet_balance, velocity), limits)
        decision = book.decide(kind, facts)
        outcome = decision.outcome
        reason = f"the rules said review (matched: {', '.join(decision.matched_ids) or 'none'})" \
            if outcome == "review" else None
        rec = TransactionRecord(
            transaction_id=TXID, transaction_type=kind, amount=str(amount),
            notifications=(NotificationSeen(ENTRY, kind, "valid", RECEIVED),), state=STATE[outcome],
            decision=decision.to_dict(), facts=facts_for_record(facts), deliveries=1, review_reason=reason)
        rec = rec.with_action(*("approve", "done", {"status": "approved"}) if outcome == "approve"
                              else ("review", "done", {"reason": reason}) if outcome == "review"
                              else ("reject", "done", {}))
        data = rec.to_dict()
        data["created_at"] = data["updated_at"] = "@@AT@@"
        for action in data["actions"]:
            action["at"] = "@@AT@@"
        out.append(Template(kind, raw, _copy_text(json.dumps(data, separators=(",", ":"))), str(amount), outcome,
                            str(STATE[outcome]), decision.content_hash, reason, facts))
    return out


def _rows(tpls: list[Template], count: int) -> Iterator[tuple[str, str]]:
    """Per notification: its COPY line for ``notifications`` and for ``transactions``."""
    txid_b = TXID.encode()
    for i in range(count):
        t = tpls[i % len(tpls)]
        txid = f"bt{i:010d}"
        received_ms = BASE_MS + i * 10
        entry_id = f"{received_ms}-0"
        at = f"{received_ms / 1000:.3f}"
        body = t.body.replace(txid_b, txid.encode())
        note = "\t".join((entry_id, t.kind, f"/vip/notify/{t.kind}", str(received_ms), "valid", "\\N", txid,
                          "\\\\x" + body.hex(), hashlib.sha256(body).hexdigest(), at))
        record = t.record.replace(TXID, txid).replace(ENTRY, entry_id).replace(RECEIVED, str(received_ms)) \
            .replace(AT, at)
        tx = "\t".join((txid, t.state, t.kind, t.amount, t.outcome, t.content_hash,
                        _copy_text(t.review_reason) if t.review_reason else "\\N",
                        at if t.review_reason else "\\N", "\\N", "1", "0", record, at, at))
        yield note + "\n", tx + "\n"


NOTE_COLUMNS = "entry_id, kind, route, received_at_ms, status, error, transaction_id, body, body_sha256, stored_at"
TX_COLUMNS = ("transaction_id, state, transaction_type, amount, outcome, ruleset_hash, review_reason, review_since, "
              "held_by, deliveries, seq, record, created_at, updated_at")


def fresh_database(url: str) -> None:
    """Drop and create the database of ``url``, then apply the ledger's migrations."""
    from worker.ledger.schema import create_database

    create_database(url, fresh=True, migrate=True)


def drop_database(url: str) -> None:
    """Drop the database of ``url`` (the bench's own)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    parts = {"host": u.host or "127.0.0.1", "port": str(u.port or 5432), "user": u.username or "postgres",
             "dbname": u.database or "", "password": u.password or ""}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v)


def seed(url: str, tpls: list[Template], count: int) -> None:
    """COPY ``count`` notifications and their transactions' rows (one transaction), then ANALYZE."""
    import psycopg

    # Two connections: one COPY each, fed side by side (one connection runs one COPY at a time).
    with psycopg.connect(_libpq(url)) as notes_conn, psycopg.connect(_libpq(url)) as tx_conn:
        for conn in (notes_conn, tx_conn):
            conn.execute("SET synchronous_commit = off")
        with notes_conn.cursor().copy(f"COPY notifications ({NOTE_COLUMNS}) FROM STDIN") as notes, \
                tx_conn.cursor().copy(f"COPY transactions ({TX_COLUMNS}) FROM STDIN") as txs:
            note_lines: list[str] = []
            tx_lines: list[str] = []
            for note, tx in _rows(tpls, count):
                note_lines.append(note)
                tx_lines.append(tx)
                if len(note_lines) == ROW_BATCH:
                    notes.write("".join(note_lines))
                    txs.write("".join(tx_lines))
                    note_lines, tx_lines = [], []
            if note_lines:
                notes.write("".join(note_lines))
                txs.write("".join(tx_lines))
        notes_conn.commit()
        tx_conn.commit()
        notes_conn.autocommit = True
        notes_conn.execute("ANALYZE notifications")
        notes_conn.execute("ANALYZE transactions")


def _lowered_rules(work: Path) -> Path:
    rules = work / "rules"
    shutil.copytree(ROOT / "rules" / "default", rules)
    text = (rules / "withdraw.yaml").read_text()
    (rules / "withdraw.yaml").write_text(text.replace("when: {amount: {gt: 2500}}", "when: {amount: {gt: 500}}"))
    return rules


@dataclass(frozen=True)
class Run:
    """One dry run in a child process."""

    seconds: float
    totals: dict[str, Any]
    peak_mb: float  # the child's peak resident set size
    cpu_s: float  # the child's user + system CPU


def run_backtest(url: str, redis_url: str, rules: Path, out: Path) -> Run:
    """Run ``vipflow replay --dry-run`` in a child process, its JSON lines into ``out``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIPFLOW_")}
    env.update({"VIPFLOW_DATABASE__URL": url, "VIPFLOW_REDIS__URL": redis_url, "VIPFLOW_REDIS__KEY_PREFIX": PREFIX,
                "PYTHONPATH": str(ROOT)})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with out.open("w") as sink:
        done = subprocess.run([sys.executable, "-m", "producers", "replay", "--dry-run", "--since", "1970-01-01",
                               "--rules", str(rules), "--json"], cwd=ROOT, env=env, stdout=sink,
                              stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"vipflow replay --dry-run failed (exit {done.returncode}): {done.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with out.open("rb") as f:  # the totals are the last line; the differences come before
        f.seek(max(0, out.stat().st_size - 4096))
        totals: dict[str, Any] = json.loads(f.read().splitlines()[-1])["totals"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(elapsed, totals, after.ru_maxrss / 1024, cpu)


def main() -> int:
    """Seed, run the dry run as an operator would, measure the rules engine, print both rates and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000, help="notifications to seed (default 1,000,000)")
    ap.add_argument("--database", default=os.environ.get("VIPFLOW_BENCH_DATABASE_URL", DEFAULT_DATABASE),
                    help="the bench's own PostgreSQL database: dropped and created again")
    ap.add_argument("--redis", default=os.environ.get("VIPFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10"),
                    help="the Redis the command connects to (the backtest does not write it)")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds to measure the rules engine's rate")
    ap.add_argument("--keep-db", action="store_true", help="leave the seeded database for a look afterwards")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vipflow-backtest-"))
    created = False
    try:
        rules = _lowered_rules(work)
        t0 = time.perf_counter()
        tpls = templates(load_rulebook(ROOT / "rules" / "default"))
        try:
            fresh_database(args.database)
        except Exception as exc:  # noqa: BLE001 - any failure here means "no PostgreSQL to bench on"
            print(f"backtest bench: cannot create the bench database ({type(exc).__name__}); start PostgreSQL "
                  "or set VIPFLOW_BENCH_DATABASE_URL / --database")
            return 1
        created = True
        seed(args.database, tpls, args.count)
        print(f"seeded {args.count:,} notifications and decided transactions into PostgreSQL "
              f"(COPY, {len(tpls):,} distinct fact sets) in {time.perf_counter() - t0:.1f} s", flush=True)

        # The rules engine on the same fact sets with the rules the dry run decides with, measured before
        # and after it (a shared machine's load moves during a run of minutes).
        book = load_rulebook(rules)
        cases = [(t.kind, t.facts) for t in tpls]
        rate(book, cases[:500], 0.5)  # warm up
        wall_before, cpu_before = rate(book, cases, args.seconds)

        run = run_backtest(args.database, args.redis, rules, work / "out.jsonl")
        n = run.totals["transactions"]
        backtest_rate = n / run.seconds
        print(f"backtest: {n:,} notifications in {run.seconds:.1f} s ({backtest_rate:,.0f} notifications/s), "
              f"{run.totals['differences']:,} differences; child process peak RSS {run.peak_mb:.0f} MB", flush=True)
        print(f"outcomes before {run.totals['before']} after {run.totals['after']}")

        wall_after, cpu_after = rate(book, cases, args.seconds)
        rules_wall, rules_cpu = (wall_before + wall_after) / 2, (cpu_before + cpu_after) / 2
        print(f"rules engine: {rules_wall:,.0f} decisions/s on the same notifications (wall clock, the mean of "
              f"{wall_before:,.0f} before and {wall_after:,.0f} after the backtest; {rules_cpu:,.0f} per CPU second; "
              "RuleBook.decide, facts prepared)")
        print(f"CPU per notification: backtest process {run.cpu_s / n * 1e6:.0f} us (its reading thread "
              f"included, PostgreSQL's not), of which deciding about {1e6 / rules_cpu:.0f} us")
        ratio = backtest_rate / rules_wall
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        print(f"backtest / rules engine: {ratio:.2f}  target >= {TARGET_RATIO:.2f}: {verdict}")
        return 0 if verdict == "PASS" else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created and not args.keep_db:
            drop_database(args.database)


if __name__ == "__main__":
    sys.exit(main())
