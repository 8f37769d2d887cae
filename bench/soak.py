"""The soak: vipflow under a steady load for a set time, with faults at intervals, watched over time.

Starts a redis-server of its own (AOF, ``appendfsync always``, ``noeviction``: the production checklist),
the VIP Connect and wallet simulator, ``vipflow ingest`` and ``--workers`` ``vipflow worker`` processes
(threads pool, production defaults otherwise: the visibility timeout stays an hour), on a fresh
PostgreSQL ledger (``--database``). Sends ``--rate`` notifications a second (the end-to-end benchmark's
mix, its rules: the shipped ones with velocity out of reach) for ``--duration`` seconds (``SOAK_S``,
default 1200), each retried on a non-200 answer as VIP Connect would. Every ``--cycle`` seconds (300) the
same faults come round:

    +30 s   a worker killed (SIGKILL), started again 10 s later (as systemd's Restart= would)
    +90 s   Redis killed (SIGKILL) and started again 5 s later from its append-only file
    +150 s  VIP Connect answers 500 to 30% of calls, for 30 s
    +195 s  VIP Connect answers 1.5 s late, for 30 s
    +240 s  the wallet service down (503 to every call), for 30 s

Every ``--sample`` seconds it prints a row: each process's resident memory, Redis's used memory, the
ledger's size, notifications sent and acknowledged, decisions and their latency (p50/p99, from the
ingestor's archive to the decision recorded) in that window, and the fault in force. At the end it waits
for the work to settle (``--settle`` seconds), then checks the invariants over every notification that
got its 200: none lost (the ledger holds it), none approved twice at VIP, none held twice in the wallet,
none left unfinished (settled: final, or waiting in review). Left unfinished ones are reported as they
are, then ``vipflow replay --unprocessed`` is run (what an operator would do; the recovery sweep of
issue 9 item 1 does it without a person once merged) and the check repeated.

    python bench/soak.py [--duration S] [--rate R] [--workers N] [--database URL] [--sample S]
    make soak            (SOAK_S=300 make soak for five minutes)

Exit 0 when every invariant holds at the end (after the replay), 1 otherwise; with ``--strict`` also 1
when anything needed the replay.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from _procs import ROOT, Children, bench_env, free_port, port_open, sigterm_as_interrupt, start_sim, wait_for
from _soak import LedgerReadings, RedisServer, Sender, percentile, redis_memory_mb, rss_mb
from e2e_bench import bench_rules, build_mix, fresh_ledger

sys.path.insert(0, str(ROOT))

from worker.ledger.states import SETTLED

OPERATOR = "op-soak"
DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/vipflow_soak"
# (offset in the cycle, seconds it lasts, name): see the module docstring.
FAULTS = ((30, 10, "worker killed"), (90, 5, "Redis restarted"), (150, 30, "VIP 500s"),
          (195, 30, "VIP slow"), (240, 30, "wallet down"))


class Soak:
    """The processes of one soak and the faults played on them."""

    def __init__(self, args: argparse.Namespace, tmp: Path, children: Children):
        from producers.embedded_redis import server_binary

        self.args, self.tmp, self.children = args, tmp, children
        self.redis = RedisServer(server_binary(), free_port(), tmp / "redis", children.log_dir / "redis.log")
        self.key = secrets.token_bytes(32)
        self.env = bench_env(self.redis.url, VIPFLOW_REDIS__KEY_PREFIX="soak", VIPFLOW_WORKER__QUEUE="soak",
                             VIPFLOW_VIP__SECRET_KEY1=base64.b64encode(self.key).decode(),
                             VIPFLOW_VIP__OPERATOR_ID=OPERATOR, VIPFLOW_INGEST__AUTH__ISSUER=OPERATOR,
                             VIPFLOW_RULES__PATH=str(bench_rules(tmp)), VIPFLOW_DATABASE__URL=args.database,
                             VIPFLOW_LOG__LEVEL="INFO", VIPFLOW_WORKER__METRICS_PORT="0")
        self.sim: Any = None
        self.ingest: Any = None
        self.workers: list[Any] = []
        self.port = free_port()
        self.gone_since: dict[int, float] = {}
        self.restarts: list[tuple[int, int | None]] = []  # (slot, exit code) of workers that stopped on their own

    def start(self) -> None:
        """Redis, the simulator, the ingestor and the workers, each waited for."""
        self.redis.start()
        self.sim = start_sim(self.env)
        self.env.update(VIPFLOW_VIP__BASE_URL=self.sim.vip_url, VIPFLOW_WALLET__URL=self.sim.wallet_url)
        self.ingest = self.children.start("ingest", ["-m", "producers", "ingest", "--port", str(self.port)], self.env)
        wait_for(lambda: port_open(self.port), 30, "the ingestor")
        self.workers = [self.start_worker(i) for i in range(self.args.workers)]

    def start_worker(self, slot: int) -> Any:
        """Start ``vipflow worker`` number ``slot`` and wait for Celery's ready line."""
        name = f"worker{slot}-{len(self.children.children)}"
        child = self.children.start(name, ["-m", "producers", "worker", "--pool", "threads", "--concurrency",
                                           str(self.args.concurrency)], self.env)
        wait_for(lambda: " ready" in child.output() or not child.alive(), 90, f"{name} to be ready")
        child.check()
        return child

    def supervise(self, now: float, killed: bool) -> list[str]:
        """Play systemd's ``Restart=on-failure`` (RestartSec=5): a worker that exited on its own is started
        again 5 s after it was seen gone (never the one the "worker killed" fault holds down). What it did."""
        said = []
        for slot, child in enumerate(self.workers):
            if child.alive() or (killed and slot == 0):
                continue
            seen = self.gone_since.setdefault(slot, now)
            if now - seen < 5:
                continue
            said.append(f"worker{slot} had exited with code {child.process.returncode}; started again "
                        "(as systemd's Restart=on-failure would)")
            self.restarts.append((slot, child.process.returncode))
            self.workers[slot] = self.start_worker(slot)
            del self.gone_since[slot]
        return said

    def fault(self, name: str, on: bool) -> None:
        """Begin (``on``) or end one of FAULTS."""
        if name == "worker killed":
            if on:
                os.killpg(self.workers[0].process.pid, signal.SIGKILL)
                self.workers[0].process.wait(10)
            else:
                self.workers[0] = self.start_worker(0)
        elif name == "Redis restarted":
            if on:
                self.redis.kill()
            else:
                self.redis.start()
        elif name == "VIP 500s":
            self.sim.faults({"error_rate": 0.3 if on else 0.0})
        elif name == "VIP slow":
            self.sim.faults({"latency_ms": 1500 if on else 0})
        elif name == "wallet down":
            requests.post(f"{self.sim.wallet_url}/sim/faults", json={"down": on}, timeout=5).raise_for_status()

    def memory(self) -> dict[str, float | None]:
        """Resident MiB of each process."""
        out = {"ingest": rss_mb(self.ingest.process.pid if self.ingest.alive() else None)}
        for i, w in enumerate(self.workers):
            out[f"worker{i}"] = rss_mb(w.process.pid if w.alive() else None, children=True)
        out["sim"] = rss_mb(self.sim.process.pid if self.sim.process.poll() is None else None)
        out["redis"] = rss_mb(self.redis.pid)
        return out


def _schedule(duration: float, cycle: float) -> list[tuple[float, str, bool]]:
    """(seconds from the start, fault, begin?) for every fault that ends before ``duration``."""
    events = []
    start = 0.0
    while start < duration:
        for offset, lasts, name in FAULTS:
            if start + offset + lasts < duration:
                events += [(start + offset, name, True), (start + offset + lasts, name, False)]
        start += cycle
    return sorted(events)


def _fmt(value: float | None, width: int, digits: int = 0) -> str:
    return f"{'-' if value is None else f'{value:.{digits}f}':>{width}}"


def _settled(reader: LedgerReadings, acked: list[str]) -> tuple[dict[str, str], list[str]]:
    states = reader.states(acked)
    return states, [t for t in acked if states.get(t) not in {str(s) for s in SETTLED}]


def _wait_settled(soak: Soak, reader: LedgerReadings, acked: list[str],
                  timeout_s: float) -> tuple[dict[str, str], list[str]]:
    deadline = time.monotonic() + timeout_s
    while True:
        for line in soak.supervise(time.time(), False):
            print(f"  (settling) {line}", flush=True)
        states, open_ = _settled(reader, acked)
        if not open_ or time.monotonic() > deadline:
            return states, open_
        time.sleep(2)


def run(args: argparse.Namespace) -> int:
    """One soak (see the module docstring); 0 when every invariant holds."""
    fresh_ledger(args.database)
    tmp = Path(tempfile.mkdtemp(prefix="vipflow-soak-"))
    count = int(args.duration * args.rate)
    mix = build_mix(count, args.seed)
    from producers.sim.wire import dumps

    payloads = [(kind, str(n.get("TransactionId") or n.get("transactionId")), dumps(n)) for kind, _, n in mix]
    reader = LedgerReadings(args.database)
    rows: list[str] = []
    with Children(keep_logs=True) as children:
        soak = Soak(args, tmp, children)
        try:
            soak.start()
            print(f"soak: {args.duration:.0f} s at {args.rate:g}/s ({count} notifications), {args.workers} workers x "
                  f"{args.concurrency} threads, faults every {args.cycle:.0f} s; logs in {children.log_dir}",
                  flush=True)
            header = (f"{'t s':>5} {'fault':<16} {'sent':>5} {'acked':>5} {'decided':>7} {'p50 ms':>7} {'p99 ms':>7} "
                      f"{'ingest':>6} " + " ".join(f"{f'w{i}':>5}" for i in range(args.workers))
                      + f" {'sim':>5} {'redis':>5} {'redis used':>10} {'db MiB':>7}")
            print(header + "   (memory: resident MiB)", flush=True)
            sender = Sender(f"http://127.0.0.1:{soak.port}", soak.key, OPERATOR, payloads, args.rate)
            events = _schedule(args.duration, args.cycle)
            sender.start()
            start = sender.started
            active: set[str] = set()
            last = start
            next_sample = start + args.sample
            while True:
                now = time.time()
                while events and start + events[0][0] <= now:
                    _, name, on = events.pop(0)
                    soak.fault(name, on)
                    (active.add if on else active.discard)(name)
                    print(f"{now - start:5.0f} fault: {name} {'begins' if on else 'ends'}", flush=True)
                for line in soak.supervise(now, "worker killed" in active):
                    print(f"{now - start:5.0f} {line}", flush=True)
                if now >= next_sample:
                    lat = reader.latencies_ms(last, now)
                    mem = soak.memory()
                    sent = sum(1 for s in sender.sent if last <= s.first_at < now)
                    acked = sum(1 for s in sender.sent if s.acked_at is not None and last <= s.acked_at < now)
                    row = (f"{now - start:5.0f} {(', '.join(sorted(active)) or '-'):<16} {sent:>5} {acked:>5} "
                           f"{len(lat):>7} {_fmt(percentile(lat, 0.5), 7)} {_fmt(percentile(lat, 0.99), 7)} "
                           f"{_fmt(mem['ingest'], 6)} " + " ".join(_fmt(mem[f'worker{i}'], 5)
                                                                  for i in range(args.workers))
                           + f" {_fmt(mem['sim'], 5)} {_fmt(mem['redis'], 5)} "
                           f"{_fmt(redis_memory_mb(soak.redis.url), 10, 1)} {_fmt(reader.size_mb(), 7, 1)}")
                    print(row, flush=True)
                    rows.append(row)
                    last, next_sample = now, next_sample + args.sample
                if now - start >= args.duration:
                    break
                time.sleep(min(0.5, max(0.05, min(next_sample, start + (events[0][0] if events else 1e18)) - now)))
            for _, name, on in events:  # faults still on at the end are ended
                if not on and name in active:
                    soak.fault(name, False)
            sender.stop_new()
            wait_for(lambda: sender.idle() or None, 120, "the sender's retries")
            return _verdict(args, soak, sender, reader)
        finally:
            if soak.sim is not None:
                soak.sim.stop()
            children.stop_all()
            soak.redis.kill()
            reader.close()
            shutil.rmtree(tmp, ignore_errors=True)


def _in_intake_buffer(soak: Soak, txids: list[str]) -> set[str]:
    """Those of ``txids`` whose notification is still in Redis's intake buffer (not drained yet)."""
    import redis

    from worker.store.archive import Archive

    client = redis.Redis.from_url(soak.redis.url)
    try:
        archive = Archive(client, "soak")
        return {t for t in txids if archive.by_transaction(t)}
    finally:
        client.close()


def _verdict(args: argparse.Namespace, soak: Soak, sender: Sender, reader: LedgerReadings) -> int:
    sent = [s for s in sender.sent if s.tries]
    acked = [s.txid for s in sent if s.acked_at is not None]
    retried = sum(1 for s in sent if s.acked_at is not None and s.tries > 1)
    gave_up = [s for s in sent if s.acked_at is None]
    for line in soak.supervise(time.time(), False):
        print(f"  {line}", flush=True)
    print(f"\nsent {len(sent)}: {len(acked)} acknowledged (200), {retried} of them after a retry; "
          f"{len(gave_up)} never acknowledged after {sender.max_tries} tries (VIP Connect would keep trying); "
          f"answers: {dict(Counter(st for s in sent for st in s.statuses))}")
    states, open_ = _wait_settled(soak, reader, acked, args.settle)
    held = set(reader.with_notification(acked))
    buffered = _in_intake_buffer(soak, [t for t in acked if t not in held])
    lost = [t for t in acked if t not in held and t not in buffered]
    vip = soak.sim.stats()["approvals"]
    wallet = requests.get(f"{soak.sim.wallet_url}/sim/stats", timeout=10).json()
    twice = sorted(t for t in acked if vip.get(t, 0) > 1)
    held_twice = sorted(t for t in acked if wallet["holds"].get(t, 0) > 1)
    print(f"after {args.settle:.0f} s to settle: states {dict(Counter(states.get(t, 'none') for t in acked))}")
    first_open = len(open_)
    if open_:
        print(f"  {len(open_)} acknowledged notifications left unfinished (no recovery sweep in this build): "
              f"{dict(Counter(states.get(t, 'no record') for t in open_))}; e.g. {open_[:5]}")
        done = subprocess.run([sys.executable, "-m", "producers", "replay", "--unprocessed", "--json"], cwd=ROOT,
                              env=soak.env, capture_output=True, text=True, timeout=300)
        print(f"  vipflow replay --unprocessed: exit {done.returncode}: {done.stdout.strip()[-300:]}"
              f"{done.stderr.strip()[-300:]}")
        states, open_ = _wait_settled(soak, reader, acked, args.settle)
        print(f"  after the replay: {len(open_)} still unfinished"
              + (f": {dict(Counter(states.get(t, 'no record') for t in open_))}" if open_ else ""))
    vip = soak.sim.stats()["approvals"]
    twice = sorted(t for t in acked if vip.get(t, 0) > 1)
    approved_unrecorded = sorted(t for t in acked if vip.get(t, 0) and states.get(t) not in ("approved", "capturing",
                                                                                            "crediting"))
    checks = {
        "nothing acknowledged lost (the ledger holds every 200)": not lost,
        "none approved twice at VIP Connect": not twice,
        "none held twice in the wallet": not held_twice,
        "nothing left unfinished (without a person)": first_open == 0,
        "nothing left unfinished after vipflow replay --unprocessed": not open_,
    }
    if soak.restarts:
        print(f"workers that stopped on their own and were started again: {len(soak.restarts)} "
              f"(exit codes {dict(Counter(code for _, code in soak.restarts))})")
    print("\ninvariants:")
    for name, ok in checks.items():
        print(f"  {'OK  ' if ok else 'FAIL'} {name}")
    print(f"  (lost {len(lost)}, approved twice {len(twice)}, held twice {len(held_twice)}, unfinished at first "
          f"{first_open}, after replay {len(open_)}; approved at VIP but not recorded approved: "
          f"{len(approved_unrecorded)})")
    print(json.dumps({"acknowledged": len(acked), "worker_restarts": len(soak.restarts), "lost": len(lost),
                      "approved_twice": len(twice), "held_twice": len(held_twice), "unfinished_first": first_open,
                      "unfinished_after_replay": len(open_), "approved_not_recorded": len(approved_unrecorded)}))
    if first_open and not args.strict:
        print("  (unfinished without a person is reported, not failed, unless --strict: the recovery sweep of "
              "issue 9 item 1 is what removes the person)")
    # Unfinished before the replay fails only with --strict (once the recovery sweep is merged).
    return 0 if not (lost or twice or held_twice or open_ or (args.strict and first_open)) else 1


def main(argv: list[str] | None = None) -> int:
    """Parse, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=float(os.environ.get("SOAK_S", 1200)),
                        help="seconds of load (default $SOAK_S, else 1200)")
    parser.add_argument("--rate", type=float, default=10.0, help="notifications per second (default 10)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cycle", type=float, default=300.0, help="seconds between rounds of faults (300)")
    parser.add_argument("--sample", type=float, default=None, help="seconds between rows (duration/20, 10..60)")
    parser.add_argument("--settle", type=float, default=180.0, help="seconds the work may take to settle (180)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when anything was left unfinished before vipflow replay --unprocessed")
    parser.add_argument("--database", default=os.environ.get("VIPFLOW_BENCH_SOAK_DATABASE", DEFAULT_DATABASE),
                        help="the ledger, dropped and created (default $VIPFLOW_BENCH_SOAK_DATABASE, else "
                             f"{DEFAULT_DATABASE})")
    args = parser.parse_args(argv)
    if args.duration < 60 or args.rate <= 0 or args.workers < 1:
        parser.error("--duration at least 60, --rate above 0, --workers at least 1")
    if args.sample is None:
        args.sample = min(60.0, max(10.0, args.duration / 20))
    sigterm_as_interrupt()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
