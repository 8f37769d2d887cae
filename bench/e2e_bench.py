"""End to end: notifications per second from the sender to the decision recorded.

Starts the VIP Connect simulator (instant, or with ``--latency-ms`` added to
every VIP call), ``vipflow ingest`` and ``--workers`` ``vipflow worker`` processes
(threads pool; by default one per core, at most two: a Python process decides on
one core at a time) as processes on free loopback ports, in a Redis database of their own (flushed),
with a random SecretKey1 shared through the environment. Sends N signed
notifications through the ingestor at a high rate and times from the first send
to the last transaction record reaching a final state (the records'
``updated_at``). Checks the simulator's approval counts: as many approvals as
approved records, none twice.

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
ingestor, simulator, and Redis through INFO), with the ceilings that follow:
one worker process cannot go past one core, nor the whole path past the cores.

    python bench/e2e_bench.py [--count 3000] [--workers 2] [--concurrency 8] [--latency-concurrency 32]
                              [--latency-ms 50] [--only instant|latency] [--floor 1050]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
from _procs import (
    DEFAULT_REDIS,
    ROOT,
    Children,
    bench_env,
    cpu_seconds,
    db_url,
    free_port,
    port_open,
    redis_cpu_seconds,
    sigterm_as_interrupt,
    start_sim,
    wait_for,
)

sys.path.insert(0, str(ROOT))

DB = 11
OPERATOR = "op-bench"
FINAL = ("approved", "review", "rejected", "failed")
# The shipped velocity thresholds, raised out of reach (see the module docstring).
_VELOCITY = {"{velocity.count_1h: {gte: 5}}": "{velocity.count_1h: {gte: 100000000}}",
             "{velocity.count_24h: {gte: 3}}": "{velocity.count_24h: {gte: 100000000}}",
             "{velocity.amount_24h: {gt: 5000}}": "{velocity.amount_24h: {gt: 100000000000}}"}


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


async def _send(port: int, payloads: list[bytes], rate: float, conns: int) -> list[int]:
    """POST every payload at ``rate`` per second over ``conns`` keep-alive connections; the statuses."""
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    statuses: list[int] = []

    async def one(payload: bytes) -> None:
        reader, writer = await pool.get()
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        statuses.append(int(head.split(b" ", 2)[1]))
        pool.put_nowait((reader, writer))

    start = time.perf_counter()
    tasks = []
    for i, payload in enumerate(payloads):
        if (delay := start + i / rate - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(payload)))
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
    cpu_ms: dict[str, float]

    @property
    def rate(self) -> float:
        """Notifications decided per second, first send to last final record."""
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def worker_cpu_ms(self) -> float:
        """The busiest worker process's CPU per notification (each process is one core at most)."""
        return max((v for k, v in self.cpu_ms.items() if k.startswith("worker")), default=0.0) or 1e-9

    @property
    def cpu_total_ms(self) -> float:
        """CPU per notification over every process on the path (workers, ingest, simulator, Redis)."""
        return sum(self.cpu_ms.values())

    @property
    def machine_ceiling(self) -> float:
        """The rate at which this mix would use every core (the sender's own CPU not counted)."""
        return (os.cpu_count() or 1) * 1000 / (self.cpu_total_ms or 1e-9)

    @property
    def correct(self) -> bool:
        """Every record final, approvals as expected, none twice."""
        return (self.approved_twice == 0 and self.approvals == self.states.get("approved", 0)
                == self.expected_approvals and sum(self.states.get(s, 0) for s in FINAL) == self.count)


def _records(db: redis.Redis, prefix: str, txids: list[str]) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    for i in range(0, len(txids), 500):
        raws = db.mget([f"{prefix}:tx:{t}" for t in txids[i:i + 500]])
        out.extend(None if r is None else json.loads(r) for r in raws)
    return out


def run(base_url: str = DEFAULT_REDIS, *, count: int = 3000, latency_ms: float = 0.0, concurrency: int = 16,
        rate: float = 3000.0, seed: int = 7, warmup: int = 40, timeout_s: float = 150,
        keep_logs: bool = False, workers: int = 1) -> Result:
    """One end-to-end run (see the module docstring); a Result."""
    url = db_url(base_url, DB)
    db = redis.Redis.from_url(url)
    db.flushdb()
    key = secrets.token_bytes(32)
    prefix, queue = "bench", "bench-e2e"
    tmp = Path(tempfile.mkdtemp(prefix="vipflow-e2e-"))
    env = bench_env(url, VIPFLOW_REDIS__KEY_PREFIX=prefix, VIPFLOW_WORKER__QUEUE=queue,
                    VIPFLOW_VIP__SECRET_KEY1=base64.b64encode(key).decode(), VIPFLOW_VIP__OPERATOR_ID=OPERATOR,
                    VIPFLOW_INGEST__AUTH__ISSUER=OPERATOR, VIPFLOW_RULES__PATH=str(bench_rules(tmp)),
                    VIPFLOW_LOG__LEVEL="INFO",
                    # No metrics port: 9108 is fixed and may be taken; a second worker would collide.
                    VIPFLOW_WORKER__METRICS_PORT="0")
    sim = None
    with Children(keep_logs) as children:
        try:
            sim = start_sim(env, *(("--latency-ms", str(latency_ms)) if latency_ms else ()))
            env.update(VIPFLOW_VIP__BASE_URL=sim.vip_url, VIPFLOW_WALLET__URL=sim.wallet_url)
            port = free_port()
            ingest = children.start("ingest", ["-m", "producers", "ingest", "--port", str(port)], env)
            pool = [children.start(f"worker{i}", ["-m", "producers", "worker", "--pool", "threads",
                                                  "--concurrency", str(concurrency)], env) for i in range(workers)]
            worker = pool[0]
            wait_for(lambda: _alive(ingest) and port_open(port), 30, "the ingestor")
            for w in pool:
                wait_for(lambda w=w: _alive(w) and " ready" in w.output(), 60, "the worker")  # type: ignore[misc]
            # Warm up (imports, rule engine, token and account caches), then start clean.
            warm = build_mix(warmup, seed + 1)
            _drain(db, prefix, queue, [n["TransactionId" if "TransactionId" in n else "transactionId"]
                                       for _, _, n in warm],
                   asyncio.run(_send(port, raw_requests(warm, port, key), 200, 8)), worker, 60)
            sim.reset()
            mix = build_mix(count, seed)
            txids = [n["TransactionId" if "TransactionId" in n else "transactionId"] for _, _, n in mix]
            payloads = raw_requests(mix, port, key)
            pids = {**{f"worker{i}": w.process.pid for i, w in enumerate(pool)},
                    "ingest": ingest.process.pid, "sim": sim.process.pid}
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            redis0 = redis_cpu_seconds(db)
            start = time.time()
            statuses = asyncio.run(_send(port, payloads, rate, 32))
            records = _drain(db, prefix, queue, txids, statuses, worker, timeout_s)
            end = max(float(r["updated_at"]) for r in records)
            cpu_ms = {name: (cpu_seconds(pid) - cpu0[name]) * 1000 / count for name, pid in pids.items()}
            cpu_ms["redis"] = (redis_cpu_seconds(db) - redis0) * 1000 / count
            approvals = {t: n for t, n in sim.stats()["approvals"].items() if t in set(txids)}
        finally:
            if sim is not None:
                sim.stop()
            children.stop_all()
            db.flushdb()
            db.close()
            shutil.rmtree(tmp, ignore_errors=True)
    states: dict[str, int] = {}
    for r in records:
        states[r["state"]] = states.get(r["state"], 0) + 1
    return Result(latency_ms, concurrency, count, end - start, states, sum(1 for n in approvals.values() if n),
                  sum(1 for n in approvals.values() if n > 1), workers,
                  sum(1 for _, want, _ in mix if want == "approved"), cpu_ms)


def _alive(child: Any) -> bool:
    child.check()  # a child that died says why at once instead of a timeout
    return True


def _drain(db: redis.Redis, prefix: str, queue: str, txids: list[str], statuses: list[int], worker: Any,
           timeout_s: float) -> list[dict[str, Any]]:
    """Wait until every record is final; the records."""
    bad = len([s for s in statuses if s != 200])
    if bad:
        raise RuntimeError(f"the ingestor refused {bad} of {len(statuses)} notifications")
    deadline = time.monotonic() + timeout_s
    while True:
        worker.check()
        if not db.llen(queue) and not db.hlen("unacked"):
            records = _records(db, prefix, txids)
            if all(r is not None and r["state"] in FINAL for r in records):
                return [r for r in records if r is not None]
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all {len(txids)} notifications were decided within {timeout_s:.0f} s")
        time.sleep(0.05)


def report(r: Result, floor: float | None) -> list[str]:
    """Lines describing one run."""
    states = ", ".join(f"{k} {v}" for k, v in sorted(r.states.items()))
    procs = f"{r.workers} workers x " if r.workers > 1 else ""
    lines = [f"e2e  sim +{r.latency_ms:.0f} ms  {procs}threads x{r.concurrency}: {r.count} notifications in "
             f"{r.seconds:.2f} s = {r.rate:,.0f}/s  ({states})",
             f"     approvals at the simulator: {r.approvals} (expected {r.expected_approvals}), "
             f"approved twice: {r.approved_twice}  -> {'correct' if r.correct else 'INCORRECT'}"]
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in r.cpu_ms.items())
    lines.append(f"     CPU per notification (ms): {cpu}; all {r.cpu_total_ms:.2f}")
    lines.append(f"     CPU ceilings: one worker process <= {1000 / r.worker_cpu_ms:,.0f}/s (one core), "
                 f"this machine <= {r.machine_ceiling:,.0f}/s ({os.cpu_count()} cores / all)")
    if floor:
        lines.append(f"     ratio to the Celery no-op floor ({floor:,.0f}/s): {r.rate / floor:.2f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run instant and +50 ms, print figures and PASS/FAIL against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=3000.0, help="send rate, notifications per second")
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker, instant simulator")
    parser.add_argument("--latency-concurrency", type=int, default=32, help="threads per worker, +latency simulator")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--floor", type=float, default=None, help="the Celery no-op drain rate (else measured)")
    parser.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)),
                        help="worker processes (default: one per core, at most 2)")
    parser.add_argument("--only", choices=("instant", "latency"), default=None)
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis server (db 11 is used and flushed)")
    args = parser.parse_args(argv)
    sigterm_as_interrupt()
    floor = args.floor
    if floor is None and args.only != "latency":
        from celery_noop_bench import measure

        floor = measure(args.redis).rate
    ok = True
    if args.only in (None, "instant"):
        r = run(args.redis, count=args.count, rate=args.rate, concurrency=args.concurrency, workers=args.workers)
        print("\n".join(report(r, floor)))
        met = r.correct and floor is not None and r.rate >= floor / 2
        print(f"     target >= half the floor ({(floor or 0) / 2:,.0f}/s): {'PASS' if met else 'FAIL'}")
        ok &= met
    if args.only in (None, "latency"):
        r = run(args.redis, count=args.count, rate=args.rate, latency_ms=args.latency_ms,
                concurrency=args.latency_concurrency, workers=args.workers)
        print("\n".join(report(r, floor)))
        met = r.correct and r.rate >= 200
        print(f"     target >= 200/s: {'PASS' if met else 'FAIL'}")
        ok &= met
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
