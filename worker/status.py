"""``vipflow status``: is the system healthy, and if not, what needs a person.

One read of everything an operator looks at first, each store asked on its own so that one down does
not hide the rest:

- **Redis** (``redis.url``): does it answer; its memory, eviction policy and persistence (a policy other
  than ``noeviction`` may evict acknowledged notifications: a problem; no AOF: a warning).
- **the ledger** (``database.url``): does it answer, at which schema revision (behind the code: a problem).
- **the queue**: tasks waiting in Celery's queue (``worker.queue``).
- **unprocessed notifications**: archived, their task not finished (the Redis intake buffer's pending set
  and the ledger's notifications without a done mark, as ``vipflow replay --unprocessed`` selects them);
  any older than ``status.unprocessed_after_s`` is a problem.
- **dead letters**: open ones (their transaction not final) are a problem (``vipflow replay --dlq``).
- **the review queue**: its size, oldest item; items older than ``review.max_age_s`` are a problem.
- **workers** (``worker.heartbeat``): each with host, pid, pool, concurrency, queue, rules versions and
  its last heartbeat; none alive, one missing (stopped beating without a clean stop) or one not ready is
  a problem; workers on different rules versions are a warning (a reload under way, or hosts out of step).

A problem is something a person must act on: each names what to do. :func:`gather` never raises for a
store that does not answer: that is reported as a problem. A problem that is the configuration's (a Redis
database number the server does not have, a login Redis refuses, a PostgreSQL database that does not exist)
names the key to fix (``Problem.config``): nothing is down, waiting will not help. A ledger that answers but
is empty has no schema (``vipflow db upgrade``), which is not "does not answer" either.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from rules.errors import VipflowError
from worker.config import Settings
from worker.errors import reason
from worker.heartbeat import read_workers
from worker.store import keys
from worker.store.archive import entry_ms
from worker.store.connection import shown_url
from worker.urls import redis_db

if TYPE_CHECKING:
    from worker.ledger import Ledger


@dataclass(frozen=True)
class Problem:
    """Something that needs a person: which check, what is wrong, what to do."""

    check: str
    problem: str
    action: str
    config: str | None = None  # the configuration key at fault (redis.url, database.url); None: not one


@dataclass
class StatusReport:
    """What ``vipflow status`` shows (``to_dict`` is its ``--json``). Times are epoch seconds, ages seconds."""

    at: float
    redis: dict[str, Any]
    ledger: dict[str, Any]
    queue: dict[str, Any] = field(default_factory=dict)
    unprocessed: dict[str, Any] = field(default_factory=dict)
    # Pending notifications the recovery sweep (worker.recovery) is watching: seen idle, re-queued once idle
    # for worker.recover_after_s. None when Redis does not answer.
    recovering: int | None = None
    dead_letters: dict[str, Any] = field(default_factory=dict)
    review: dict[str, Any] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True when nothing needs a person."""
        return not self.problems

    @property
    def misconfigured(self) -> bool:
        """True when a problem is the configuration's (``Problem.config``): fix it, restarting helps nothing."""
        return any(p.config for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        out = asdict(self)
        del out["recovering"]  # shown inside "unprocessed"
        out["healthy"] = self.healthy
        return out

    def add(self, check: str, problem: str, action: str, config: str | None = None) -> None:
        """Record a problem (``config``: the configuration key at fault, when it is one)."""
        self.problems.append(Problem(check, problem, action, config))


def gather(settings: Settings, *, redis_client: Any, ledger: Ledger, now: float | None = None) -> StatusReport:
    """Read Redis (``redis_client``, a redis-py client) and the ledger (a ``worker.ledger.Ledger``) and judge
    them (see the module). ``now``: epoch seconds (default the clock)."""
    now = time.time() if now is None else now
    prefix, queue = settings.redis.key_prefix, settings.worker.queue
    report = StatusReport(
        at=round(now, 3),
        redis={"url": shown_url(settings.redis.url), "database": redis_db(settings.redis.url), "prefix": prefix,
               "answers": False},
        ledger={"url": ledger.engine.url.render_as_string(hide_password=True), "dialect": ledger.engine.dialect.name,
                "answers": False},
    )
    pending: set[str] = set()
    if _redis(report, settings, redis_client, prefix, queue, now, pending):
        _workers(report, settings, redis_client, prefix, now)
    ledger_ids = _ledger(report, settings, ledger, now)
    _unprocessed(report, settings, pending, ledger_ids, now, redis_ok=report.redis["answers"])
    return report


def _redis(report: StatusReport, settings: Settings, client: Any, prefix: str, queue: str, now: float,
           pending: set[str]) -> bool:
    names = [queue] + [f"{queue}\x06\x16{p}" for p in (3, 6, 9)]  # Celery's priority lists
    try:
        started = time.monotonic()
        client.ping()
        latency_ms = (time.monotonic() - started) * 1000
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        pipe.smembers(keys.pending(prefix))
        pipe.hlen(keys.recovery_watch(prefix))
        *depths, members, watched = pipe.execute()
        info = client.info("memory") | client.info("persistence") | client.info("server")
    except Exception as exc:  # noqa: BLE001 - a Redis that does not answer is the report's first problem
        why = reason(exc)
        report.redis["error"] = why
        kinds = {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
        if "redis.exceptions.ResponseError" in kinds and "DB index" in why:
            report.redis["misconfigured"] = "redis.url"
            report.add("redis", f"Redis at {report.redis['url']} has no database {report.redis['database']} "
                       f"({why})", "fix the database number at the end of redis.url (Redis has 16, 0 to 15, "
                       "unless its databases setting says more)", config="redis.url")
        elif "redis.exceptions.AuthenticationError" in kinds:
            report.redis["misconfigured"] = "redis.url"
            report.add("redis", f"Redis at {report.redis['url']} refused the login ({why})",
                       "fix the user and password in redis.url", config="redis.url")
        else:
            report.add("redis", f"Redis at {report.redis['url']} does not answer ({why})",
                       "start Redis or fix redis.url; nothing is accepted or decided meanwhile")
        return False
    pending.update(m.decode() if isinstance(m, bytes) else str(m) for m in members)
    policy = str(info.get("maxmemory_policy", "unknown"))
    report.redis.update(answers=True, ping_ms=round(latency_ms, 2), version=info.get("redis_version"),
                        used_memory_bytes=int(info.get("used_memory", 0)),
                        maxmemory_bytes=int(info.get("maxmemory", 0)), maxmemory_policy=policy,
                        aof_enabled=bool(int(info.get("aof_enabled", 0))))
    report.queue = {"name": queue, "depth": sum(int(d) for d in depths)}
    report.recovering = int(watched)
    if policy != "noeviction":
        report.add("redis", f"Redis's maxmemory-policy is {policy}: it may evict queued notifications",
                   "set maxmemory-policy noeviction (see the README's production checklist)")
    if not report.redis["aof_enabled"]:
        report.warnings.append("Redis has no append-only file: a restart loses what it acknowledged since its "
                               "last snapshot (appendonly yes, appendfsync always or everysec)")
    return True


def _workers(report: StatusReport, settings: Settings, client: Any, prefix: str, now: float) -> None:
    try:
        seen = read_workers(client, prefix)
    except Exception as exc:  # noqa: BLE001 - Redis failed between two reads
        report.add("workers", f"cannot read the workers' heartbeats ({reason(exc)})", "check Redis")
        return
    versions: Counter[str] = Counter()
    for w in seen:
        doc = dict(w.doc)
        row = {"id": w.id, "host": doc.get("host", w.id.rpartition(":")[0]), "pid": doc.get("pid"),
               "alive": w.alive, "last_heartbeat": round(w.last_seen, 3),
               "age_s": round(max(0.0, now - w.last_seen), 1),
               "pool": doc.get("pool"), "concurrency": doc.get("concurrency"), "queue": doc.get("queue"),
               "rules": doc.get("rules", {}), "started_at": doc.get("started_at"), "ready": doc.get("ready"),
               "not_ready": doc.get("not_ready", {}), "metrics_port": doc.get("metrics_port")}
        report.workers.append(row)
        if not w.alive:
            report.add("workers", f"worker {w.id} stopped beating {_age(now - w.last_seen)} ago without a clean stop",
                       "see why it stopped (its supervisor's log: journalctl -u 'vipflow-worker@*') and start it "
                       "again; its tasks are delivered again")
            continue
        if not doc.get("ready", False):
            why = "; ".join(f"{k}: {v}" for k, v in dict(doc.get("not_ready") or {}).items()) or "unknown"
            report.add("workers", f"worker {w.id} is alive but not ready ({why})", "see the worker's log")
        versions[_versions_text(doc.get("rules") or {})] += 1
    if not any(w.alive for w in seen):
        report.add("workers", "no worker is alive: nothing is decided", "start vipflow worker (systemctl start "
                   "'vipflow-worker@1')")
    if len(versions) > 1:
        report.warnings.append("workers run different rules versions: " + " | ".join(
            f"{text} ({n} worker{'s' if n > 1 else ''})" for text, n in versions.most_common()))


def _versions_text(rules: dict[str, Any]) -> str:
    parts = []
    for name in sorted(rules):
        value = rules[name]
        if isinstance(value, dict):
            parts.append(f"{name} v{value.get('version')} {str(value.get('hash', ''))[:12]}")
        else:
            parts.append(f"{name} {value}")
    return ", ".join(parts) or "(none)"


def _ledger(report: StatusReport, settings: Settings, ledger: Ledger, now: float) -> list[tuple[str, int]]:
    from worker.ledger.schema import current_revision, head_revision

    try:
        with ledger.engine.connect() as conn:  # the driver's own reason when it does not answer
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - a ledger that does not answer is reported, not raised
        why = reason(exc)
        report.ledger["error"] = why
        database = ledger.engine.url.database
        if ledger.engine.dialect.name == "postgresql" and f'database "{database}" does not exist' in why:
            report.ledger["misconfigured"] = "database.url"
            report.add("ledger", f"the ledger's database {database!r} does not exist on the server of "
                       f"{report.ledger['url']}",
                       f"create it first (createdb {database}, or CREATE DATABASE \"{database}\"), then vipflow "
                       "db upgrade creates the schema; or fix database.url", config="database.url")
        else:
            report.add("ledger", f"the ledger at {report.ledger['url']} does not answer ({why})",
                       "start the database or fix database.url; workers retry their writes meanwhile")
        return []
    try:
        revision = current_revision(ledger.engine)
        head = head_revision()
        if revision is None:
            report.ledger.update(answers=True, revision=None, head_revision=head)
            report.add("ledger", f"the ledger at {report.ledger['url']} answers but has no schema (an empty "
                       "database)", "run vipflow db upgrade")
            return []
        ids = ledger.unfinished_ids()
        size, oldest_age, overdue = ledger.review_stats(settings.review.max_age_s, now)
        letters = ledger.dead_letters()
    except Exception as exc:  # noqa: BLE001 - a ledger that does not answer is reported, not raised
        why = str(exc) if isinstance(exc, VipflowError) else reason(exc)
        report.ledger["error"] = why
        report.add("ledger", f"the ledger at {report.ledger['url']} does not answer ({why})",
                   "start the database or fix database.url; workers retry their writes meanwhile")
        return []
    report.ledger.update(answers=True, revision=revision, head_revision=head)
    if revision != head:
        report.add("ledger", f"the ledger's schema is at {revision or 'nothing'}, this vipflow needs {head}",
                   "run vipflow db upgrade")
    report.review = {"waiting": size, "oldest_age_s": round(oldest_age, 1), "overdue": overdue,
                     "overdue_after_s": settings.review.max_age_s}
    if overdue:
        report.add("review", f"{overdue} transaction{'s' if overdue > 1 else ''} waited for review longer than "
                   f"{_age(settings.review.max_age_s)} (review.max_age_s)", "vipflow review list")
    oldest_letter = min((letter.at for letter in letters), default=None)
    report.dead_letters = {"open": len(letters), "oldest_age_s": None if oldest_letter is None else
                           round(now - oldest_letter, 1),
                           "reasons": dict(Counter(letter.reason for letter in letters))}
    if letters:
        report.add("dead_letters", f"{len(letters)} open dead letter{'s' if len(letters) > 1 else ''} "
                   f"({', '.join(f'{k} {v}' for k, v in report.dead_letters['reasons'].items())})",
                   "vipflow replay --dlq (says per letter what it did)")
    return ids


def _unprocessed(report: StatusReport, settings: Settings, pending: set[str], ledger_ids: list[tuple[str, int]],
                 now: float, *, redis_ok: bool) -> None:
    received = {entry_id: ms for entry_id, ms in ledger_ids}
    for entry_id in pending:
        ms = entry_ms(entry_id)
        if ms is not None:
            received.setdefault(entry_id, ms)
    limit_s = settings.status.unprocessed_after_s
    ages = sorted((now - ms / 1000 for ms in received.values()), reverse=True)
    late = [a for a in ages if a > limit_s]
    report.unprocessed = {"count": len(received), "in_redis": len(pending),
                          "only_in_ledger": len(set(received) - pending) if redis_ok else None,
                          "oldest_age_s": round(ages[0], 1) if ages else 0.0,
                          "older_than_limit": len(late), "limit_s": limit_s, "recovering": report.recovering}
    if late:
        report.add("unprocessed", f"{len(late)} notification{'s' if len(late) > 1 else ''} archived more than "
                   f"{_age(limit_s)} ago and not finished (oldest {_age(ages[0])})",
                   "check the workers, then vipflow replay --unprocessed")


def _age(seconds: float) -> str:
    """A duration for people: 45 s, 12 min, 3.5 h, 2.0 d."""
    s = max(0.0, float(seconds))
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172_800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86_400:.1f} d"


def age_text(seconds: float) -> str:
    """A duration for people (see :func:`_age`), for the command's table."""
    return _age(seconds)
