"""The floor of the stack: how fast a real Celery worker drains a bare no-op task on the same Redis.

The app has vipflow's own delivery settings (``worker.celery_app.create_celery``:
late acknowledgement, prefetch 1, the same visibility timeout) and one task
that does nothing. N messages are queued first, in a Redis database of their
own (flushed before and after); then a worker process starts and the drain is
timed from outside, so the task stays a true no-op: from the moment the queue
first shrinks (the first message taken) to the moment the queue and Celery's
``unacked`` hash are both empty (the last message acknowledged, which with
late acknowledgement is after the task finished).

    python bench/celery_noop_bench.py [--count 5000] [--pool threads] [--concurrency 16] [--prefork]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import redis
from _procs import DEFAULT_REDIS, ROOT, Children, bench_env, db_url, sigterm_as_interrupt, tree_cpu_seconds

sys.path.insert(0, str(ROOT))

QUEUE = "bench-noop"
NOOP = "bench.noop"
# The Redis database (flushed); the test suites use 12-15. VIPFLOW_BENCH_NOOP_REDIS_DB moves it.
DB = int(os.environ.get("VIPFLOW_BENCH_NOOP_REDIS_DB", "9"))


def make_app(redis_url: str) -> Any:
    """A Celery app with vipflow's settings (queue ``bench-noop``) and the no-op task, without vipflow's tasks."""
    from worker.celery_app import create_celery
    from worker.config import load_settings

    ours = {"VIPFLOW_REDIS__URL": redis_url, "VIPFLOW_WORKER__QUEUE": QUEUE}
    saved = {name: os.environ.get(name) for name in ours}
    os.environ.update(ours)
    try:
        settings = load_settings()
    finally:  # not for the caller's other children (make bench's ingest bench reads the queue name)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    app = create_celery(settings)
    app.conf.include = ()  # the floor: no vipflow task module, no rule warm-up

    @app.task(name=NOOP, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def noop() -> None:
        """Nothing at all."""

    return app


@dataclass(frozen=True)
class Drain:
    """One measured drain."""

    pool: str
    concurrency: int
    count: int
    seconds: float
    cpu_ms: float = 0.0  # the worker process's CPU per task: Celery's own cost, the stack's floor


    @property
    def rate(self) -> float:
        """Tasks per second, first to last completion."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


def measure(base_url: str = DEFAULT_REDIS, *, count: int = 5000, pool: str = "threads", concurrency: int = 16,
            timeout_s: float = 120) -> Drain:
    """Queue ``count`` no-ops, start a worker, time the drain; a Drain."""
    url = db_url(base_url, DB)
    db = redis.Redis.from_url(url)
    db.flushdb()
    app = make_app(url)
    with Children() as children:
        try:
            with app.producer_or_acquire() as producer:
                for _ in range(count):
                    app.send_task(NOOP, queue=QUEUE, producer=producer)
            queued = db.llen(QUEUE)
            if queued != count:
                raise RuntimeError(f"queued {queued} of {count} no-op messages")
            worker = children.start("noop-worker", [
                str(ROOT / "bench" / "celery_noop_bench.py"), "--worker", "--pool", pool,
                "--concurrency", str(concurrency)], bench_env(url))
            deadline = time.monotonic() + timeout_s
            while db.llen(QUEUE) >= count:  # worker start-up is not part of the drain
                worker.check()
                if time.monotonic() > deadline:
                    raise RuntimeError("the no-op worker took no message in time")
                time.sleep(0.001)
            start, cpu0 = time.perf_counter(), tree_cpu_seconds(worker.process.pid)
            while db.llen(QUEUE) or db.hlen("unacked"):
                worker.check()
                if time.monotonic() > deadline:
                    raise RuntimeError("the no-op worker did not drain the queue in time")
                time.sleep(0.002)
            seconds = time.perf_counter() - start
            cpu_ms = (tree_cpu_seconds(worker.process.pid) - cpu0) * 1000 / count
        finally:
            children.stop_all()
            db.flushdb()
            db.close()
    return Drain(pool, concurrency, count, seconds, cpu_ms)


def _worker(args: argparse.Namespace) -> int:
    app = make_app(os.environ["VIPFLOW_REDIS__URL"])
    app.worker_main(["worker", "--pool", args.pool, "--concurrency", str(args.concurrency), "--queues", QUEUE,
                     "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Print the drain rate (threads, as vipflow runs by default; and prefork with --prefork)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=16, help="vipflow's default worker.concurrency")
    parser.add_argument("--prefork", action="store_true", help="also measure a prefork pool (2 processes)")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis server (db 12 is used and flushed)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    sigterm_as_interrupt()
    runs = [measure(args.redis, count=args.count, pool=args.pool, concurrency=args.concurrency)]
    if args.prefork:
        runs.append(measure(args.redis, count=args.count, pool="prefork", concurrency=2))
    for d in runs:
        print(f"celery no-op  {d.pool:8s} x{d.concurrency:<3d} {d.count} tasks in {d.seconds:.2f} s"
              f" = {d.rate:,.0f} tasks/s, worker CPU {d.cpu_ms:.2f} ms per task")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
