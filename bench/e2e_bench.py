"""End to end: notifications per second from the sender to the decision recorded.

Starts the VIP Connect simulator (instant, or with ``--latency-ms`` added to
every VIP call), ``vipflow ingest`` and ``--workers`` ``vipflow worker`` processes
(threads pool; by default one per core, at most two: a Python process decides on
one core at a time) as processes on free loopback ports, in a Redis database of their own (flushed),
with a random SecretKey1 shared through the environment. Sends N signed
notifications through the ingestor at a high rate and times from the first send
to the last transaction settling in the ledger (``worker.ledger.states.SETTLED``:
final, or waiting for a person; the ``transactions.updated_at`` of the last one).
The workers write the ledger at ``--database``: by default a PostgreSQL database
of the benchmark's own (``vipflow_bench_e2e``), dropped, created and migrated
before each run. Checks the simulator's approval counts: as many approvals as
approved transactions in the ledger, none twice.

The mix (``build_mix``, seeded): 65% deposits by one of 500 crowd patrons
(PREFERRED_GOOD's twins with their own cards, 10.00-900.00), 15% deposits by
ONLINE on its instant bank (10.00-300.00), 12% withdrawals by a crowd patron and
3% by ONLINE (ACH, 10.00-12.00: frozen, then approved), 5% deposits by
PREFERRED_BAD (rejected without an approval call); both key casings and both
number encodings. Spreading the traffic over many cards keeps velocity windows
and the account cache as production would see them (about one account lookup
per six notifications) instead of piling thousands of transactions on one card.
Cards still repeat within the run, so the benchmark runs the shipped rule set
with only its velocity thresholds raised out of reach (same rules, same
evaluation work); the shipped thresholds would send some to review.

CPU is measured per notification for every process on the path (workers,
ingestor, simulator, Redis through INFO, and the ledger: the PostgreSQL server
processes of the benchmark's database plus the rest of the server, see
``_procs.PostgresCpu``), with the ceilings that follow: one worker process
cannot go past one core, nor the whole path past the cores.

The +latency case is also run on the code before the ledger (``--baseline``,
default BASELINE_REF): a temporary ``git worktree`` of that commit runs its own
``bench/e2e_bench.py --only latency`` with the same figures, importing its own
packages. Both sides run ``--rounds`` times (ROUNDS, 5) in alternating order (B L,
L B, ...), each run once the machine has gone quiet (``wait_quiet``); the ledger's
median rate must reach RATIO_TARGET of the baseline's median (``run_compared``).

Issue 9's targets, each a ratio or a figure of one run: the busiest worker's CPU per
notification (instant simulator) at most CPU_RATIO_TARGET times Celery's own CPU per
task (bench/celery_noop_bench.py, measured first); the +latency rate at least
HIDDEN_LATENCY_TARGET of the instant rate (the same worker processes: VIP's latency
hidden by threads); and ``--only approval``: notifications at APPROVAL_RATE per second
with an instant simulator, timed from the ingestor's 200 (read by the sender) to the
simulator receiving the approval call (``/sim/stats``' ``first_approval_at``, the same
machine's clock), p99 under APPROVAL_P99_MS.

    python bench/e2e_bench.py [--count 3000] [--workers 2] [--concurrency 8] [--latency-concurrency 32]
                              [--latency-ms 50] [--only instant|latency|approval] [--floor 1050]
                              [--database postgresql+psycopg://postgres@127.0.0.1:5432/vipflow_bench_e2e]
                              [--baseline d7a1cde|none] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
from _procs import (
    BENCH_APP,
    DEFAULT_REDIS,
    ROOT,
    Children,
    PostgresCpu,
    PostgresCpuUse,
    bench_env,
    cpu_seconds,
    db_url,
    free_port,
    port_open,
    redis_cpu_seconds,
    run_streaming,
    sigterm_as_interrupt,
    start_sim,
    wait_for,
)

sys.path.insert(0, str(ROOT))

from worker.ledger.states import SETTLED, State

# The Redis database (flushed); the test suites use 12-15. VIPFLOW_BENCH_E2E_REDIS_DB moves it (and the
# baseline's run with it), for a machine where several people run benchmarks on one Redis.
DB = int(os.environ.get("VIPFLOW_BENCH_E2E_REDIS_DB", "11"))
DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/vipflow_bench_e2e"
OPERATOR = "op-bench"
# The last commit before the ledger (issue 8): the end-to-end rate the ledger is compared with.
BASELINE_REF = "d7a1cde"
RATIO_TARGET = 0.90  # the ledger's +latency rate over the baseline's, at least
# Runs of each side for that ratio (alternating order, medians): one pair of runs on this kind of shared
# machine was seen to vary by 0.75-0.94 from one pair to the next, and three-round medians by 0.81-0.89
# on nearly the same code; five rounds add about 80 s to `make bench`.
ROUNDS = int(os.environ.get("VIPFLOW_BENCH_ROUNDS", "5"))
# The shipped velocity thresholds, raised out of reach (see the module docstring).
_VELOCITY = {"{velocity.attempts.count_1h: {gte: 5}}": "{velocity.attempts.count_1h: {gte: 100000000}}",
             "{velocity.attempts.count_24h: {gte: 3}}": "{velocity.attempts.count_24h: {gte: 100000000}}",
             "{velocity.committed.amount_24h: {gt: 5000}}": "{velocity.committed.amount_24h: {gt: 100000000000}}"}


def bench_rules(directory: Path) -> Path:
    """A copy of rules/default with the velocity thresholds raised (its YAML tests left out)."""
    out = directory / "rules"
    out.mkdir()
    for name in ("deposit.yaml", "withdraw.yaml"):
        text = (ROOT / "rules" / "default" / name).read_text(encoding="utf-8")
        for old, new in _VELOCITY.items():
            text = text.replace(old, new)
        (out / name).write_text(text, encoding="utf-8")
    changed = sum(old in (ROOT / "rules" / "default" / n).read_text(encoding="utf-8")
                  for n in ("deposit.yaml", "withdraw.yaml") for old in _VELOCITY)
    if changed != len(_VELOCITY):
        raise RuntimeError("the shipped velocity rules changed; update bench/e2e_bench.py's _VELOCITY")
    return out


def build_mix(count: int, seed: int, patrons: int = 500) -> list[tuple[str, str, dict[str, Any]]]:
    """``count`` (kind, expected outcome, body) in the mix the module docstring describes."""
    from producers.sim.patrons import ONLINE, PREFERRED_BAD, crowd_patron
    from producers.sim.sender import build_notification

    rng = random.Random(seed)
    run = secrets.token_hex(3)
    out: list[tuple[str, str, dict[str, Any]]] = []
    for i in range(count):
        r = rng.random()
        pascal, as_strings = rng.random() < 0.5, rng.random() < 0.5
        good = crowd_patron(rng.randrange(patrons))
        kind, want, patron, cents, bank = (
            ("deposit", "approved", good, (1_000, 90_000), 0) if r < 0.65 else
            ("deposit", "approved", ONLINE, (1_000, 30_000), 0) if r < 0.80 else
            ("withdraw", "approved", good, (1_000, 1_200), 1) if r < 0.92 else
            ("withdraw", "approved", ONLINE, (1_000, 1_200), 1) if r < 0.95 else
            ("deposit", "rejected", PREFERRED_BAD, (1_000, 5_000), 0))
        out.append((kind, want, build_notification(
            patron, kind, Decimal(rng.randint(*cents)) / 100, bank_index=bank, transaction_id=f"bench{run}{i:08d}",
            pascal=pascal, as_strings=as_strings)))
    return out


def raw_requests(mix: list[tuple[str, str, dict[str, Any]]], port: int, key: bytes) -> list[bytes]:
    """Each notification as a complete HTTP/1.1 request, signed as VIP Connect would."""
    from producers.sim.wire import dumps
    from worker.tokens import mint

    token = mint(key, OPERATOR, "vip-api", 900)
    out = []
    for kind, _, note in mix:
        body = dumps(note)
        out.append((f"POST /vip/notify/{kind} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    return out


async def _send(port: int, payloads: list[bytes], rate: float, conns: int,
                acked: list[float] | None = None) -> list[int]:
    """POST every payload at ``rate`` per second over ``conns`` keep-alive connections; the statuses.
    ``acked`` (as long as ``payloads``) gets, per payload, when its answer was read (epoch seconds)."""
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    statuses: list[int] = []

    async def one(i: int, payload: bytes) -> None:
        reader, writer = await pool.get()
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        if acked is not None:
            acked[i] = time.time()
        statuses.append(int(head.split(b" ", 2)[1]))
        pool.put_nowait((reader, writer))

    start = time.perf_counter()
    tasks = []
    for i, payload in enumerate(payloads):
        if (delay := start + i / rate - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, payload)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    while not pool.empty():
        pool.get_nowait()[1].close()
    return statuses


@dataclass(frozen=True)
class Result:
    """One end-to-end run."""

    latency_ms: float
    concurrency: int
    count: int
    seconds: float
    states: dict[str, int]
    approvals: int
    approved_twice: int
    workers: int
    expected_approvals: int
    cpu_ms: dict[str, float]  # per notification, by process; "ledger" is the PostgreSQL server's share
    ledger: PostgresCpuUse | None = None  # the ledger's CPU in detail (None: SQLite, inside the workers)
    database: str = ""  # where the ledger was (no password)
    rate_offered: float = 0.0  # notifications sent per second
    # Per approved transaction: from the ingestor's 200 (read by the sender) to the simulator receiving
    # the approval call, milliseconds, sorted.
    approval_ms: tuple[float, ...] = ()

    def approval_percentile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of ``approval_ms`` (nearest rank), milliseconds; nan when none."""
        if not self.approval_ms:
            return float("nan")
        return self.approval_ms[min(len(self.approval_ms) - 1, max(0, round(q * len(self.approval_ms)) - 1))]

    @property
    def rate(self) -> float:
        """Notifications decided per second, first send to the last transaction settled in the ledger."""
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def worker_cpu_ms(self) -> float:
        """The busiest worker process's CPU per notification (each process is one core at most)."""
        return max((v for k, v in self.cpu_ms.items() if k.startswith("worker")), default=0.0) or 1e-9

    @property
    def ledger_cpu_ms(self) -> float:
        """The ledger's database server's CPU per notification (0.0 when it runs inside the workers)."""
        return self.cpu_ms.get("ledger", 0.0)

    @property
    def cpu_total_ms(self) -> float:
        """CPU per notification over every process on the path (workers, ingest, simulator, Redis, ledger)."""
        return sum(self.cpu_ms.values())

    @property
    def machine_ceiling(self) -> float:
        """The rate at which this mix would use every core (the sender's own CPU not counted)."""
        return (os.cpu_count() or 1) * 1000 / (self.cpu_total_ms or 1e-9)

    @property
    def correct(self) -> bool:
        """Every transaction settled, approvals as expected, none twice."""
        return (self.approved_twice == 0 and self.approvals == self.states.get(State.APPROVED, 0)
                == self.expected_approvals and sum(self.states.get(s, 0) for s in SETTLED) == self.count)


def fresh_ledger(url: str) -> None:
    """Drop and create the ledger's database at ``url`` and migrate it to this code's head.

    PostgreSQL: ``DROP DATABASE ... WITH (FORCE)`` then ``CREATE DATABASE`` through the server's
    ``postgres`` database. SQLite: the file (an absolute path) and its -wal/-shm are removed."""
    from sqlalchemy.engine import make_url

    from worker.ledger.schema import create_database, make_engine, upgrade

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if not path or path == ":memory:" or not Path(path).is_absolute():
            raise SystemExit(f"--database {url}: give SQLite as an absolute file path (sqlite:////tmp/bench.db); "
                             "the workers run in another directory and need a file they share")
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
    else:
        create_database(url, fresh=True)
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


class LedgerReader:
    """The benchmark's reads of the ledger: each transaction's state and ``updated_at``
    (one connection, named BENCH_APP so its work is never counted as the ledger's)."""

    def __init__(self, url: str):
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        from worker.ledger.schema import make_engine

        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            self.engine = make_engine(url, pool_size=1)
        else:
            self.engine = create_engine(parsed.set(drivername="postgresql+psycopg"), pool_size=1,
                                        connect_args={"application_name": BENCH_APP})

    def states(self, txids: list[str]) -> dict[str, tuple[str, float]]:
        """transaction id -> (state, updated_at epoch seconds), for those the ledger holds."""
        from sqlalchemy import select

        from worker.ledger.tables import transactions as tx

        out: dict[str, tuple[str, float]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(txids), 1000):
                rows = conn.execute(select(tx.c.transaction_id, tx.c.state, tx.c.updated_at)
                                    .where(tx.c.transaction_id.in_(txids[i:i + 1000])))
                out.update((t, (s, float(u))) for t, s, u in rows)
        return out

    def close(self) -> None:
        """Close its connection."""
        self.engine.dispose()


def run(base_url: str = DEFAULT_REDIS, *, count: int = 3000, latency_ms: float = 0.0, concurrency: int = 16,
        rate: float = 3000.0, seed: int = 7, warmup: int = 40, timeout_s: float = 150,
        keep_logs: bool = False, workers: int = 1, database: str = DEFAULT_DATABASE) -> Result:
    """One end-to-end run (see the module docstring) on a fresh ledger at ``database``; a Result."""
    from sqlalchemy.engine import make_url

    url = db_url(base_url, DB)
    db = redis.Redis.from_url(url)
    db.flushdb()
    fresh_ledger(database)
    postgres = make_url(database).get_backend_name() == "postgresql"
    key = secrets.token_bytes(32)
    prefix, queue = "bench", "bench-e2e"
    tmp = Path(tempfile.mkdtemp(prefix="vipflow-e2e-"))
    env = bench_env(url, VIPFLOW_REDIS__KEY_PREFIX=prefix, VIPFLOW_WORKER__QUEUE=queue,
                    VIPFLOW_VIP__SECRET_KEY1=base64.b64encode(key).decode(), VIPFLOW_VIP__OPERATOR_ID=OPERATOR,
                    VIPFLOW_INGEST__AUTH__ISSUER=OPERATOR, VIPFLOW_RULES__PATH=str(bench_rules(tmp)),
                    VIPFLOW_DATABASE__URL=database, VIPFLOW_LOG__LEVEL="INFO",
                    # No metrics port: 9108 is fixed and may be taken; a second worker would collide.
                    VIPFLOW_WORKER__METRICS_PORT="off")
    sim = None
    reader = LedgerReader(database)
    pg = PostgresCpu(database) if postgres else None
    ledger_use = None
    with Children(keep_logs) as children:
        try:
            sim = start_sim(env, *(("--latency-ms", str(latency_ms)) if latency_ms else ()))
            env.update(VIPFLOW_VIP__BASE_URL=sim.vip_url, VIPFLOW_WALLET__URL=sim.wallet_url)
            port = free_port()
            ingest = children.start("ingest", ["-m", "producers", "ingest", "--port", str(port)], env)
            pool = [children.start(f"worker{i}", ["-m", "producers", "worker", "--pool", "threads",
                                                  "--concurrency", str(concurrency)], env) for i in range(workers)]
            wait_for(lambda: _alive(ingest) and port_open(port), 30, "the ingestor")
            for w in pool:
                wait_for(lambda w=w: _alive(w) and " ready" in w.output(), 60, "the worker")  # type: ignore[misc]
            # Warm up (imports, rule engine, token and account caches, ledger connections), then start clean.
            warm = build_mix(warmup, seed + 1)
            _drain(db, reader, queue, [_txid(n) for _, _, n in warm],
                   asyncio.run(_send(port, raw_requests(warm, port, key), 200, 8)), pool, 60)
            sim.reset()
            mix = build_mix(count, seed)
            txids = [_txid(n) for _, _, n in mix]
            payloads = raw_requests(mix, port, key)
            pids = {**{f"worker{i}": w.process.pid for i, w in enumerate(pool)},
                    "ingest": ingest.process.pid, "sim": sim.process.pid}
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            redis0 = redis_cpu_seconds(db)
            if pg is not None:
                pg.start()
            start = time.time()
            acked = [0.0] * len(payloads)
            statuses = asyncio.run(_send(port, payloads, rate, 32, acked))
            decided = _drain(db, reader, queue, txids, statuses, pool, timeout_s)
            end = max(updated for _, updated in decided.values())
            cpu_ms = {name: (cpu_seconds(pid) - cpu0[name]) * 1000 / count for name, pid in pids.items()}
            cpu_ms["redis"] = (redis_cpu_seconds(db) - redis0) * 1000 / count
            if pg is not None:  # before the workers stop: their backends are still there to read
                ledger_use, pg = pg.stop(), None
                cpu_ms["ledger"] = ledger_use.ledger * 1000 / count
            stats = sim.stats()
            approvals = {t: n for t, n in stats["approvals"].items() if t in set(txids)}
            first_call = stats.get("first_approval_at", {})
            approval_ms = sorted((first_call[t] - acked[i]) * 1000 for i, t in enumerate(txids) if t in first_call)
        finally:
            if pg is not None:
                pg.stop()
            if sim is not None:
                sim.stop()
            children.stop_all()
            reader.close()
            db.flushdb()
            db.close()
            shutil.rmtree(tmp, ignore_errors=True)
    states: dict[str, int] = {}
    for state, _ in decided.values():
        states[state] = states.get(state, 0) + 1
    return Result(latency_ms, concurrency, count, end - start, states, sum(1 for n in approvals.values() if n),
                  sum(1 for n in approvals.values() if n > 1), workers,
                  sum(1 for _, want, _ in mix if want == "approved"), cpu_ms, ledger_use,
                  make_url(database).render_as_string(hide_password=True), rate, tuple(approval_ms))


def _txid(note: dict[str, Any]) -> str:
    return str(note["TransactionId" if "TransactionId" in note else "transactionId"])


def _alive(child: Any) -> bool:
    child.check()  # a child that died says why at once instead of a timeout
    return True


def _drain(db: redis.Redis, reader: LedgerReader, queue: str, txids: list[str], statuses: list[int],
           workers: list[Any], timeout_s: float) -> dict[str, tuple[str, float]]:
    """Wait until every transaction is settled in the ledger; transaction id -> (state, updated_at)."""
    bad = len([s for s in statuses if s != 200])
    if bad:
        raise RuntimeError(f"the ingestor refused {bad} of {len(statuses)} notifications")
    deadline = time.monotonic() + timeout_s
    while True:
        for w in workers:
            w.check()
        if not db.llen(queue) and not db.hlen("unacked"):  # only then is the ledger read (cheap to wait)
            decided = reader.states(txids)
            if len(decided) == len(txids) and all(state in SETTLED for state, _ in decided.values()):
                return decided
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all {len(txids)} notifications were decided within {timeout_s:.0f} s")
        time.sleep(0.05)


def report(r: Result, floor: float | None) -> list[str]:
    """Lines describing one run."""
    states = ", ".join(f"{k} {v}" for k, v in sorted(r.states.items()))
    procs = f"{r.workers} workers x " if r.workers > 1 else ""
    lines = [f"e2e  sim +{r.latency_ms:.0f} ms  {procs}threads x{r.concurrency}: {r.count} notifications in "
             f"{r.seconds:.2f} s = {r.rate:,.0f}/s  ({states})",
             f"     ledger: {r.database}",
             f"     approvals at the simulator: {r.approvals} (expected {r.expected_approvals}), "
             f"approved twice: {r.approved_twice}  -> {'correct' if r.correct else 'INCORRECT'}"]
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in r.cpu_ms.items())
    lines.append(f"     CPU per notification (ms): {cpu}; all {r.cpu_total_ms:.2f}")
    lines.extend(ledger_lines(r))
    lines.append(f"     CPU ceilings: one worker process <= {1000 / r.worker_cpu_ms:,.0f}/s (one core), "
                 f"this machine <= {r.machine_ceiling:,.0f}/s ({os.cpu_count()} cores / all)")
    if floor:
        lines.append(f"     ratio to the Celery no-op floor ({floor:,.0f}/s): {r.rate / floor:.2f}")
    if r.approval_ms:
        lines.append(f"     {latency_line(r)}")
    return lines


APPROVAL_RATE = 100.0  # notifications per second offered when the approval latency is the figure
APPROVAL_P99_MS = 50.0  # issue 9: the ingestor's 200 to VIP's approval call, p99 under this


def latency_line(r: Result) -> str:
    """The notification-to-approval latency of a run: p50, p99, max over its approved transactions."""
    return (f"ingestor's 200 to VIP's approval call ({len(r.approval_ms)} approvals, {r.rate_offered:,.0f}/s "
            f"offered): p50 {r.approval_percentile(0.5):.1f} ms, p99 {r.approval_percentile(0.99):.1f} ms, "
            f"max {r.approval_ms[-1]:.1f} ms")


CPU_RATIO_TARGET = 3.0  # issue 9: a worker's CPU per notification over Celery's own per-task CPU, at most
HIDDEN_LATENCY_TARGET = 0.8  # issue 9: the +50 ms rate over the instant rate (two workers), at least


def cpu_ratio_line(r: Result, celery_cpu_ms: float) -> tuple[str, bool]:
    """Issue 9: the busiest worker's CPU per notification over Celery's per-task CPU (the no-op bench in
    the same run); (line, met)."""
    ratio = r.worker_cpu_ms / celery_cpu_ms if celery_cpu_ms > 0 else float("inf")
    met = ratio <= CPU_RATIO_TARGET
    return (f"worker CPU per notification / Celery's per task: {r.worker_cpu_ms:.2f} / {celery_cpu_ms:.2f} ms = "
            f"{ratio:.2f}, target <= {CPU_RATIO_TARGET:.1f}: {'PASS' if met else 'FAIL'}"), met


def hidden_latency_line(instant: Result, slow: Result) -> tuple[str, bool]:
    """Issue 9: VIP's latency hidden by concurrency, the slow run's rate over the instant one's; (line, met)."""
    ratio = slow.rate / instant.rate if instant.rate > 0 else 0.0
    met = instant.correct and slow.correct and ratio >= HIDDEN_LATENCY_TARGET
    return (f"+{slow.latency_ms:.0f} ms / instant ({slow.workers} workers): {slow.rate:,.0f} / {instant.rate:,.0f}/s "
            f"= {ratio:.2f}, target >= {HIDDEN_LATENCY_TARGET:.1f}: {'PASS' if met else 'FAIL'}"), met


def approval_target_line(r: Result) -> tuple[str, bool]:
    """Issue 9: the 200-to-approval p99 under APPROVAL_P99_MS; (line, met)."""
    p99 = r.approval_percentile(0.99)
    met = r.correct and bool(r.approval_ms) and p99 < APPROVAL_P99_MS
    return f"approval p99 {p99:.1f} ms, target < {APPROVAL_P99_MS:.0f} ms: {'PASS' if met else 'FAIL'}", met


def run_approval_latency(base_url: str = DEFAULT_REDIS, *, count: int = 1500, workers: int = 2,
                         concurrency: int = 8, database: str = DEFAULT_DATABASE) -> Result:
    """Issue 9's latency case: ``count`` notifications at APPROVAL_RATE per second (a steady load, far
    below saturation) with an instant simulator; the Result's ``approval_ms`` holds the figures."""
    return run(base_url, count=count, rate=APPROVAL_RATE, latency_ms=0.0, concurrency=concurrency,
               workers=workers, database=database)


def ledger_lines(r: Result) -> list[str]:
    """What the ledger's share ("ledger" above) counted."""
    use = r.ledger
    if use is None:
        return ["     the ledger's share: inside the workers' own CPU (SQLite, in process)"]
    per = 1000 / r.count
    share = r.ledger_cpu_ms / (r.cpu_total_ms or 1e-9)
    lines = [f"     the ledger's share (PostgreSQL): {r.ledger_cpu_ms:.2f} ms = {share:.0%} of all; counted: "
             f"{use.backend_count} server processes of database {use.database} {use.backends * per:.2f} ms "
             f"+ the rest of the server {use.rest * per:.2f} ms",
             f"       (the rest: postmaster, {', '.join(use.background) or 'no background processes'}, backends "
             f"that ended between 0.2 s samples; the bench's own ledger reads not counted)"]
    if use.other_commits > 0 or use.others > 0:
        lines.append(f"       other databases on the server meanwhile: {use.other_commits} commits, "
                     f"{use.others * per:.2f} ms in their sessions (not counted): the rest may hold some of their "
                     "work; the ledger's share is an upper bound")
    lines.append(f"     the ledger's work per notification: {use.commits / r.count:.1f} commits, "
                 f"{use.inserted / r.count:.1f} rows inserted, {use.updated / r.count:.1f} updated; "
                 f"{use.backend_count} server processes (connections) seen in all")
    return lines


@dataclass(frozen=True)
class Baseline:
    """The +latency run of the code before the ledger (its own bench, in a worktree of ``ref``)."""

    ref: str
    commit: str
    count: int
    seconds: float
    rate: float  # notifications decided per second, as that code's bench printed it
    correct: bool
    output: str = field(repr=False)


def _git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()[:300]}")
    return done.stdout.strip()


# Put in the baseline's worktree as sitecustomize.py (PYTHONPATH = that tree, for its bench and for the
# children its bench starts): the venv's editable install of this checkout adds an import finder that
# serves any module the tree lacks (worker.ledger, say) from this checkout; this drops it, so the
# baseline runs its own code and nothing else.
_SEAL = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path_hooks[:] = [h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")]
sys.path[:] = [p for p in sys.path if not p.endswith(".__path_hook__")]
"""
# Run in the worktree with its environment: which packages that tree's bench would import.
_PROBE = """
import importlib.util, json, producers, worker
print(json.dumps({"worker": worker.__file__, "producers": producers.__file__,
                  "ledger": importlib.util.find_spec("worker.ledger") is not None}))
"""


def _same_redis_db(bench: Path) -> None:
    """Point the baseline's bench at this bench's Redis database (its ``DB = 11`` line), so the two runs
    flush and use the same one and nobody else's."""
    text = bench.read_text(encoding="utf-8")
    patched, n = re.subn(r"^DB = \d+", f"DB = {DB}", text, count=1, flags=re.M)
    if not n:
        raise RuntimeError(f"{bench}: no 'DB = N' line to point at Redis database {DB}")
    bench.write_text(patched, encoding="utf-8")


class BaselineTree:
    """A temporary ``git worktree`` of ``ref`` (removed on leaving) whose own ``bench/e2e_bench.py --only latency``
    can be run several times: ``PYTHONPATH`` = that tree and the editable install's finder dropped (``_SEAL``),
    so its workers import its own ``worker`` and ``producers`` (checked: no ``worker.ledger`` importable, no
    ledger file made)."""

    def __init__(self, ref: str = BASELINE_REF):
        self.ref = ref
        self.tmp = Path(tempfile.mkdtemp(prefix="vipflow-baseline-"))
        self.tree = self.tmp / "tree"
        self.commit = ""
        self.env: dict[str, str] = {}

    def __enter__(self) -> BaselineTree:
        tree = self.tree
        _git("worktree", "add", "--detach", str(tree), self.ref)
        try:
            self.commit = _git("rev-parse", "--short", "HEAD", cwd=tree)
            (tree / "sitecustomize.py").write_text(_SEAL, encoding="utf-8")
            _same_redis_db(tree / "bench" / "e2e_bench.py")
            env = {k: v for k, v in os.environ.items() if not k.startswith("VIPFLOW_")}
            env.update(PYTHONPATH=str(tree), PYTHONUNBUFFERED="1")
            probe = subprocess.run([sys.executable, "-c", _PROBE], cwd=tree, env=env, capture_output=True, text=True)
            if probe.returncode:
                raise RuntimeError(f"{self.ref}'s packages do not import: {probe.stderr.strip()[-500:]}")
            found = json.loads(probe.stdout)
            if found["ledger"] or not all(Path(found[p]).resolve().is_relative_to(tree.resolve())
                                          for p in ("worker", "producers")):
                raise RuntimeError(f"the baseline would import {found['worker']} and {found['producers']} "
                                   f"(worker.ledger found: {found['ledger']}), not {self.ref}'s tree {tree} alone")
            self.env = env
            print(f"  baseline | {self.ref} = {self.commit} in {tree}: imports worker and producers from that tree, "
                  "no worker.ledger", flush=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            _git("worktree", "remove", "--force", str(self.tree))
        except RuntimeError:
            _git("worktree", "prune")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self, base_url: str = DEFAULT_REDIS, *, count: int = 3000, rate: float = 3000.0,
            latency_ms: float = 50.0, concurrency: int = 32, workers: int = 2, timeout_s: float = 600) -> Baseline:
        """One run of the baseline's +latency case with these figures; its output is printed as it comes,
        each line after "  baseline | "."""
        tree = self.tree
        code, out = run_streaming(
            [sys.executable, str(tree / "bench" / "e2e_bench.py"), "--only", "latency", "--count", str(count),
             "--rate", str(rate), "--latency-ms", str(latency_ms), "--latency-concurrency", str(concurrency),
             "--workers", str(workers), "--redis", base_url],
            cwd=tree, env=self.env, timeout_s=timeout_s, prefix="  baseline | ")
        made = [str(p.relative_to(tree)) for p in tree.glob("var/*.db*")]
        if made:
            raise RuntimeError(f"the baseline run created a ledger ({', '.join(made)}): it ran this checkout's code")
        print(f"  baseline | no ledger created in {tree} (var/*.db): the workers ran {self.ref}'s code", flush=True)
        found_rate = re.search(r"(\d+) notifications in ([\d.]+) s = ([\d,]+)/s", out)
        if not found_rate:
            raise RuntimeError(f"the baseline's bench printed no rate (exit {code})")
        return Baseline(self.ref, self.commit, int(found_rate.group(1)), float(found_rate.group(2)),
                        float(found_rate.group(3).replace(",", "")), "-> correct" in out, out)


def wait_quiet(max_wait_s: float = 20.0, idle_share: float = 0.85, window_s: float = 1.0) -> float:
    """Wait until the machine's CPUs were at least ``idle_share`` idle over ``window_s`` (the previous run's
    processes, the database's checkpoint after its drop, the page cache's writeback: gone), at most
    ``max_wait_s``; the idle share last seen (0-1). Reads /proc/stat (Linux); elsewhere returns 1.0 at once."""
    def sample() -> tuple[int, int]:
        fields = Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]
        values = [int(v) for v in fields]
        return values[3] + values[4], sum(values[:8])  # idle + iowait, all but guest time

    if not Path("/proc/stat").exists():
        return 1.0
    deadline = time.monotonic() + max_wait_s
    idle0, total0 = sample()
    while True:
        time.sleep(window_s)  # the measuring window of a CPU counter, not a wait for an event
        idle1, total1 = sample()
        share = (idle1 - idle0) / max(1, total1 - total0)
        if share >= idle_share or time.monotonic() >= deadline:
            return share
        idle0, total0 = idle1, total1


@dataclass(frozen=True)
class Compared:
    """The +latency case run in alternating rounds on the baseline and on the ledger (B L, L B, B L, ...):
    a run's order and the machine's drift weigh on both sides alike. The ratio is of the medians."""

    bases: list[Baseline]
    ledgers: list[Result]

    @property
    def base_rate(self) -> float:
        return statistics.median(b.rate for b in self.bases)

    @property
    def ledger_rate(self) -> float:
        return statistics.median(r.rate for r in self.ledgers)

    @property
    def ratio(self) -> float:
        return self.ledger_rate / self.base_rate if self.base_rate > 0 else 0.0

    @property
    def correct(self) -> bool:
        return all(b.correct for b in self.bases) and all(r.correct for r in self.ledgers)

    @property
    def median_ledger(self) -> Result:
        """The ledger's run of the median rate (its CPU figures are the ones shown)."""
        ranked = sorted(self.ledgers, key=lambda r: r.rate)
        return ranked[(len(ranked) - 1) // 2]


def run_compared(ref: str = BASELINE_REF, base_url: str = DEFAULT_REDIS, *, rounds: int = ROUNDS,
                 count: int = 3000, rate: float = 3000.0, latency_ms: float = 50.0, concurrency: int = 32,
                 workers: int = 2, database: str = DEFAULT_DATABASE) -> Compared:
    """``rounds`` runs each of the baseline (``ref``) and the ledger, in alternating order (B L, L B, ...),
    each after the machine has gone quiet (``wait_quiet``); every run's figures are printed."""
    bases: list[Baseline] = []
    ledgers: list[Result] = []
    with BaselineTree(ref) as tree:
        for n in range(rounds):
            order = ("base", "ledger") if n % 2 == 0 else ("ledger", "base")
            for side in order:
                idle = wait_quiet()
                print(f"== round {n + 1} of {rounds}: {'baseline ' + ref if side == 'base' else 'ledger'} "
                      f"(machine {idle:.0%} idle before it)", flush=True)
                if side == "base":
                    bases.append(tree.run(base_url, count=count, rate=rate, latency_ms=latency_ms,
                                          concurrency=concurrency, workers=workers))
                else:
                    r = run(base_url, count=count, rate=rate, latency_ms=latency_ms, concurrency=concurrency,
                            workers=workers, database=database)
                    print("\n".join(report(r, None)), flush=True)
                    ledgers.append(r)
    return Compared(bases, ledgers)


def compared_lines(c: Compared) -> tuple[list[str], bool]:
    """The comparison the issue asks for, over the rounds: each run's rate, both medians, their ratio, PASS/FAIL."""
    met = c.correct and c.ratio >= RATIO_TARGET
    r = c.ledgers[0]
    base = c.bases[0]
    base_bad = "" if all(b.correct for b in c.bases) else " (INCORRECT)"
    ledger_bad = "" if all(x.correct for x in c.ledgers) else " (INCORRECT)"
    return [f"compare  sim +{r.latency_ms:.0f} ms, {r.workers} workers x{r.concurrency}, {r.count} notifications, "
            f"{len(c.bases)} rounds in alternating order:",
            f"     baseline {base.ref} ({base.commit}, before the ledger, Redis records): median {c.base_rate:,.0f}/s "
            f"({', '.join(f'{b.rate:,.0f}' for b in c.bases)}){base_bad}",
            f"     ledger ({r.database}): median {c.ledger_rate:,.0f}/s "
            f"({', '.join(f'{x.rate:,.0f}' for x in c.ledgers)}){ledger_bad}",
            f"     ratio of the medians {c.ratio:.2f}, target >= {RATIO_TARGET:.2f}: {'PASS' if met else 'FAIL'}"], met


def main(argv: list[str] | None = None) -> int:
    """Run instant and +50 ms (and +50 ms on the baseline), print figures and PASS/FAIL against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=3000.0, help="send rate, notifications per second")
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker, instant simulator")
    parser.add_argument("--latency-concurrency", type=int, default=32, help="threads per worker, +latency simulator")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--floor", type=float, default=None, help="the Celery no-op drain rate (else measured)")
    parser.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)),
                        help="worker processes (default: one per core, at most 2)")
    parser.add_argument("--only", choices=("instant", "latency", "approval"), default=None,
                        help="instant: the instant simulator; latency: +latency-ms (and the baseline); "
                             f"approval: the 200-to-approval latency at {APPROVAL_RATE:.0f}/s")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help=f"Redis server (db {DB} is used and flushed)")
    parser.add_argument("--database", default=DEFAULT_DATABASE,
                        help="the ledger (dropped, created and migrated before each run)")
    parser.add_argument("--baseline", default=BASELINE_REF, metavar="REF",
                        help="the commit the +latency rate is compared with ('none': no comparison)")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help="runs of each side for that comparison, in alternating order (medians compared)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    sigterm_as_interrupt()
    floor, celery_cpu_ms = args.floor, None
    if args.only in (None, "instant"):
        from celery_noop_bench import measure

        drain = measure(args.redis)
        floor = floor or drain.rate
        celery_cpu_ms = drain.cpu_ms
        print(f"celery no-op: {drain.rate:,.0f} tasks/s, worker CPU {drain.cpu_ms:.2f} ms per task")
    ok = True
    instant = None
    if args.only in (None, "instant"):
        instant = run(args.redis, count=args.count, rate=args.rate, concurrency=args.concurrency,
                      workers=args.workers, database=args.database)
        print("\n".join(report(instant, floor)))
        if celery_cpu_ms:
            line, met = cpu_ratio_line(instant, celery_cpu_ms)
            print(f"     {line}")
            ok &= met
    if args.only in (None, "latency"):
        compared = None
        if args.baseline.lower() != "none":
            compared = run_compared(args.baseline, args.redis, rounds=args.rounds, count=args.count,
                                    rate=args.rate, latency_ms=args.latency_ms,
                                    concurrency=args.latency_concurrency, workers=args.workers,
                                    database=args.database)
            r = compared.median_ledger
            print("the ledger's run of the median rate:")
        else:
            r = run(args.redis, count=args.count, rate=args.rate, latency_ms=args.latency_ms,
                    concurrency=args.latency_concurrency, workers=args.workers, database=args.database)
        print("\n".join(report(r, floor)))
        met = r.correct and r.rate >= 200
        print(f"     target >= 200/s: {'PASS' if met else 'FAIL'}")
        ok &= met
        if celery_cpu_ms:
            line, met = cpu_ratio_line(r, celery_cpu_ms)
            print(f"     {line}")
            ok &= met
        if instant is not None:
            line, met = hidden_latency_line(instant, r)
            print(f"     {line}")
            ok &= met
        if compared is not None:
            lines, met = compared_lines(compared)
            print("\n".join(lines))
            ok &= met
    if args.only in (None, "approval"):
        r = run_approval_latency(args.redis, workers=args.workers, concurrency=args.concurrency,
                                 database=args.database)
        print("\n".join(report(r, None)))
        line, met = approval_target_line(r)
        print(f"     {line}")
        ok &= met
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
