"""Worker heartbeats: each ``vipflow worker`` says every few seconds that it is alive, and what it runs.

A daemon thread of the worker's main process writes, every ``worker.heartbeat_interval_s``:

- ``{p}:worker:{id}``: JSON with the worker's host, pid, pool, concurrency, queue, the rules versions in
  force, when it started, its metrics port, whether it is ready and why not, and the time of this beat.
  It lives three intervals, so a worker that stops beating (killed, host lost, wedged) vanishes from it.
- ``{p}:workers``: a sorted set of worker ids scored by their last beat, and ``{p}:workers:last`` (a hash:
  id -> its last heartbeat's JSON, kept so that a missing worker is still described). Members silent for
  ``FORGET_AFTER_S`` are dropped from both at every beat (both expire after as long without one):
  a worker whose heartbeat key expired while it is still a member is *missing*, which is what
  ``vipflow status`` and the ``vipflow_workers_missing`` gauge report. A worker stopped cleanly removes
  itself from both, so a planned stop is not an alarm.

The same thread checks the ledger (one ``SELECT 1``); its results, Redis's answer to the beat itself and
whether Celery's consumer is running make the worker's readiness (``/readyz``, see ``worker.health``).
Key names come from ``worker.store.keys``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.errors import reason
from worker.store import keys

log = logging.getLogger("vipflow.heartbeat")
FORGET_AFTER_S = 3600  # a missing worker is reported for an hour after its last beat, then forgotten
TTL_INTERVALS = 3  # a heartbeat key outlives two missed beats


def worker_id(host: str, pid: int) -> str:
    """A worker's id: ``host:pid`` (unique among the live processes of a deployment)."""
    return f"{host}:{pid}"


@dataclass
class Readiness:
    """What the worker's ``/readyz`` and ``/healthz`` answer from: set by the heartbeat thread and by
    Celery's signals; read by the health endpoint's thread (plain assignments: atomic in CPython)."""

    consumer: bool = False  # Celery's consumer is running (worker_ready seen, no shutdown yet)
    redis: str | None = "not checked yet"  # None: answered the last beat; else why not
    ledger: str | None = "not checked yet"
    last_tick: float = 0.0  # monotonic time of the heartbeat thread's last round (liveness)

    def problems(self) -> dict[str, str]:
        """What keeps the worker from being ready: {check: why}; empty when ready."""
        out: dict[str, str] = {}
        if not self.consumer:
            out["consumer"] = "Celery's consumer is not running (starting, or shutting down)"
        if self.redis is not None:
            out["redis"] = self.redis
        if self.ledger is not None:
            out["ledger"] = self.ledger
        return out

    def alive(self, interval_s: float, now: float | None = None) -> bool:
        """True while the heartbeat thread has run a round within ``TTL_INTERVALS`` intervals (seconds)."""
        now = time.monotonic() if now is None else now
        return self.last_tick > 0 and now - self.last_tick <= TTL_INTERVALS * interval_s


RulesVersions = Callable[[], Mapping[str, Any]]


class Heartbeat:
    """Writes one worker's heartbeat every ``interval_s`` seconds in a daemon thread (see the module)."""

    def __init__(self, client: Any, prefix: str, *, interval_s: float, identity: Mapping[str, Any],
                 rules_versions: RulesVersions, ledger_check: Callable[[], None],
                 readiness: Readiness | None = None, host: str | None = None, pid: int | None = None):
        self._client = client
        self._prefix = prefix
        self.interval_s = interval_s
        self.host = host or socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self.id = worker_id(self.host, self.pid)
        self._identity = dict(identity)
        self._rules_versions = rules_versions
        self._ledger_check = ledger_check
        self.readiness = readiness or Readiness()
        self.started_at = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vipflow-heartbeat", daemon=True)

    def document(self, now: float | None = None) -> dict[str, Any]:
        """The JSON this worker writes: its identity, rules versions, readiness and the time (epoch s)."""
        now = time.time() if now is None else now
        try:
            rules: Mapping[str, Any] = self._rules_versions()
        except Exception as exc:  # noqa: BLE001 - a heartbeat says what it can; the rules' own log says why
            rules = {"error": type(exc).__name__}
        problems = self.readiness.problems()
        problems.pop("redis", None)  # this beat reaching Redis is the answer to that one
        return {**self._identity, "id": self.id, "host": self.host, "pid": self.pid,
                "started_at": round(self.started_at, 3), "at": round(now, 3), "interval_s": self.interval_s,
                "rules": dict(rules), "ready": not problems, "not_ready": problems}

    def beat(self, now: float | None = None) -> None:
        """One round: check the ledger, then write the heartbeat (Redis's answer recorded either way)."""
        now = time.time() if now is None else now
        try:
            self._ledger_check()
            self.readiness.ledger = None
        except Exception as exc:  # noqa: BLE001 - any failure of the ledger means not ready, said once
            self.readiness.ledger = f"the ledger did not answer ({reason(exc)})"
        ttl_ms = int(self.interval_s * TTL_INTERVALS * 1000)
        members, last = keys.workers(self._prefix), keys.workers_last(self._prefix)
        doc = json.dumps(self.document(now))
        try:
            forgotten = self._client.zrangebyscore(members, "-inf", now - FORGET_AFTER_S)
            pipe = self._client.pipeline(transaction=True)
            pipe.set(keys.worker_heartbeat(self._prefix, self.id), doc, px=ttl_ms)
            pipe.zadd(members, {self.id: now})
            pipe.hset(last, self.id, doc)
            if forgotten:
                pipe.zrem(members, *forgotten)
                pipe.hdel(last, *forgotten)
            pipe.expire(members, FORGET_AFTER_S)
            pipe.expire(last, FORGET_AFTER_S)
            pipe.execute()
            self.readiness.redis = None
        except Exception as exc:  # noqa: BLE001 - a beat that cannot be written is a readiness problem
            self.readiness.redis = f"Redis did not answer ({reason(exc)})"
        self.readiness.last_tick = time.monotonic()

    def start(self) -> None:
        """Beat now and every ``interval_s`` seconds in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and remove this worker's heartbeat: a clean stop is not a missing worker."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 5)
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(keys.worker_heartbeat(self._prefix, self.id))
            pipe.zrem(keys.workers(self._prefix), self.id)
            pipe.hdel(keys.workers_last(self._prefix), self.id)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - Redis gone at stop: the key expires on its own
            log.warning("could not remove the heartbeat at stop (%s); it expires by itself", type(exc).__name__)

    def _loop(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:  # a bug here must not end the beats silently
                log.exception("heartbeat round failed; trying again")
            if self._stop.wait(self.interval_s):
                return


@dataclass(frozen=True)
class WorkerSeen:
    """One worker as ``vipflow status`` sees it: alive (its heartbeat key is there) or missing (still a
    member of the set, its key expired). ``doc`` is its last heartbeat's JSON."""

    id: str
    last_seen: float  # epoch seconds of its last beat
    alive: bool
    doc: Mapping[str, Any]


def read_workers(client: Any, prefix: str) -> list[WorkerSeen]:
    """Every worker seen in the last ``FORGET_AFTER_S`` seconds, most recent first: two round trips.
    Raises redis errors as they come (the caller reports Redis as down)."""
    members = [(m.decode() if isinstance(m, bytes) else str(m), float(s))
               for m, s in client.zrevrange(keys.workers(prefix), 0, -1, withscores=True)]
    if not members:
        return []
    ids = [m for m, _ in members]
    pipe = client.pipeline(transaction=False)
    pipe.mget([keys.worker_heartbeat(prefix, m) for m in ids])
    pipe.hmget(keys.workers_last(prefix), ids)
    current, last = pipe.execute()
    out = []
    for (member, score), raw, old in zip(members, current, last, strict=True):
        doc: Mapping[str, Any] = {}
        if raw is not None or old is not None:
            try:
                doc = json.loads(raw if raw is not None else old)
            except ValueError:
                doc = {"error": "unreadable heartbeat"}
        out.append(WorkerSeen(member, score, raw is not None, doc))
    return out
