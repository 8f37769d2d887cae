"""The soak's parts: a Redis server it can kill and restart, a steady sender that retries as VIP Connect
does, and the readings it takes over time (process memory, Redis memory, database size, latency).
"""

from __future__ import annotations

import heapq
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests
from _procs import BENCH_APP, wait_for


class RedisServer:
    """A redis-server of the soak's own (free port, its own directory), with an append-only file synced
    at every write (``appendfsync always``) and ``noeviction``, as the README's checklist asks; ``kill()``
    is SIGKILL, ``start()`` again reads the AOF back."""

    def __init__(self, binary: str, port: int, directory: Path, log: Path):
        self.binary, self.port, self.directory, self.log = binary, port, directory, log
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers (loading its AOF first)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--maxmemory-policy", "noeviction",
             "--daemonize", "no"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            wait_for(lambda: client.ping(), 30, "the soak's redis-server", poll_s=0.1)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: what a crash or an out-of-memory kill does."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self.process.pid if self.process is not None and self.process.poll() is None else None


@dataclass
class Sent:
    """One notification's fate at the sender: when first sent, when acknowledged (200), how many tries."""

    txid: str
    first_at: float = 0.0
    acked_at: float | None = None
    tries: int = 0
    statuses: list[int] = field(default_factory=list)


class Sender:
    """Posts ``payloads`` (kind, transaction id, body bytes) at ``rate`` per second, each signed afresh;
    a non-200 answer or no answer is tried again after 1, 2, 4 ... 30 s, up to ``max_tries``, as VIP
    Connect retries a notification it could not deliver. Threads: ``threads`` posting in parallel."""

    def __init__(self, url: str, key: bytes, operator: str, payloads: list[tuple[str, str, bytes]], rate: float,
                 *, threads: int = 8, max_tries: int = 12):
        self.url, self.key, self.operator = url, key, operator
        self.payloads, self.rate, self.max_tries = payloads, rate, max_tries
        self.sent = [Sent(txid) for _, txid, _ in payloads]
        self._heap: list[tuple[float, int]] = []
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._next = 0
        self._threads = [threading.Thread(target=self._post_loop, daemon=True, name=f"soak-send-{i}")
                         for i in range(threads)]
        self.started = 0.0

    def start(self) -> None:
        """Start sending now."""
        self.started = time.time()
        for t in self._threads:
            t.start()
        threading.Thread(target=self._schedule, daemon=True, name="soak-schedule").start()

    def _schedule(self) -> None:
        for i in range(len(self.payloads)):
            due = self.started + i / self.rate
            if self._stop.is_set():
                return
            with self._cv:
                heapq.heappush(self._heap, (due, i))
                self._cv.notify()
            pause = due - time.time()
            if pause > 0:
                self._stop.wait(pause)
            self._next = i + 1

    def stop_new(self) -> int:
        """Send no new notification from now on (retries go on); how many were scheduled."""
        self._stop.set()
        return self._next

    def _post_loop(self) -> None:
        from worker.tokens import mint

        session = requests.Session()
        while True:
            with self._cv:
                while not self._heap:
                    if self._stop.is_set() and self._done():
                        return
                    self._cv.wait(0.5)
                due, i = heapq.heappop(self._heap)
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            kind, _, body = self.payloads[i]
            entry = self.sent[i]
            entry.tries += 1
            entry.first_at = entry.first_at or time.time()
            token = mint(self.key, self.operator, "vip-api", 600)
            try:
                answer = session.post(f"{self.url}/vip/notify/{kind}", data=body, timeout=10,
                                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                status = answer.status_code
            except requests.RequestException:
                status = 0
                session = requests.Session()
            entry.statuses.append(status)
            if status == 200:
                entry.acked_at = time.time()
            elif entry.tries < self.max_tries:
                with self._cv:
                    heapq.heappush(self._heap, (time.time() + min(30.0, 2.0 ** (entry.tries - 1)), i))
                    self._cv.notify()

    def _done(self) -> bool:
        return all(s.acked_at is not None or s.tries >= self.max_tries or s.tries == 0 for s in self.sent)

    def idle(self) -> bool:
        """True when nothing is waiting to be sent or tried again."""
        with self._cv:
            return not self._heap


def rss_mb(pid: int | None, *, children: bool = False) -> float | None:
    """Resident memory of ``pid`` (and its children) in MiB, None when it is not running."""
    if pid is None:
        return None
    pids = [pid]
    if children:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if stat.read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                    pids.append(int(stat.parent.name))
            except (OSError, IndexError):
                continue
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            if p == pid:
                return None
    return total / 1024


class LedgerReadings:
    """The soak's reads of the ledger (one connection named BENCH_APP): its size, decision latencies and
    the state of the transactions sent."""

    def __init__(self, url: str):
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        self.engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"), pool_size=1,
                                    connect_args={"application_name": BENCH_APP})

    def size_mb(self) -> float | None:
        """The database's size on disk (pg_database_size), MiB."""
        from sqlalchemy import text

        try:
            with self.engine.connect() as conn:
                return float(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()) / 2**20
        except Exception:  # noqa: BLE001 - a reading missed is shown as '-'
            return None

    def latencies_ms(self, since: float, until: float) -> list[float]:
        """For the transactions first decided in [since, until) (epoch s): milliseconds from their first
        notification's receipt (the ingestor's archive) to that decision."""
        from sqlalchemy import text

        q = text("""
            WITH decided AS (SELECT transaction_id, min(at) AS at FROM events WHERE kind = 'decided'
                             GROUP BY transaction_id HAVING min(at) >= :since AND min(at) < :until),
                 received AS (SELECT transaction_id, min(received_at_ms) AS ms FROM notifications
                              WHERE transaction_id IN (SELECT transaction_id FROM decided) GROUP BY transaction_id)
            SELECT d.at * 1000 - r.ms FROM decided d JOIN received r USING (transaction_id)""")
        try:
            with self.engine.connect() as conn:
                return sorted(float(v) for (v,) in conn.execute(q, {"since": since, "until": until}))
        except Exception:  # noqa: BLE001
            return []

    def states(self, txids: list[str]) -> dict[str, str]:
        """transaction id -> state, for those the ledger holds."""
        from sqlalchemy import select

        from worker.ledger.tables import transactions as tx

        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(txids), 1000):
                out.update((t, s) for t, s in conn.execute(
                    select(tx.c.transaction_id, tx.c.state).where(tx.c.transaction_id.in_(txids[i:i + 1000]))))
        return out

    def with_notification(self, txids: list[str]) -> set[str]:
        """The transaction ids among ``txids`` whose notification the ledger holds."""
        from sqlalchemy import select

        from worker.ledger.tables import notifications as n

        out: set[str] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(txids), 1000):
                out.update(t for (t,) in conn.execute(
                    select(n.c.transaction_id).where(n.c.transaction_id.in_(txids[i:i + 1000])).distinct()))
        return out

    def close(self) -> None:
        """Close the connection."""
        self.engine.dispose()


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of sorted ``values`` (nearest rank), None when empty."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, round(q * len(values) + 0.5) - 1))]


def redis_memory_mb(url: str) -> float | None:
    """Redis's used_memory in MiB, None when it does not answer."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1)
    try:
        info: dict[str, Any] = client.info("memory")
        return float(info["used_memory"]) / 2**20
    except redis.RedisError:
        return None
    finally:
        client.close()
