"""``vipflow status`` (worker.status): each store read on its own, each problem named with what to do;
heartbeats (worker.heartbeat) tell alive, missing and cleanly stopped workers apart."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import update

from tests.conftest import archived_note
from worker.config import RedisSettings, ReviewSettings, Settings, StatusSettings, WorkerSettings
from worker.heartbeat import Heartbeat, Readiness, read_workers
from worker.ledger import Ledger, State, TransactionRecord, tables
from worker.ledger.schema import make_engine
from worker.status import gather
from worker.store import keys

PREFIX = "st"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def _settings(redis_url: str, **over: object) -> Settings:
    return Settings(redis=RedisSettings(url=redis_url, key_prefix=PREFIX), worker=WorkerSettings(queue="stq"),
                    review=ReviewSettings(max_age_s=3600), status=StatusSettings(unprocessed_after_s=300), **over)


def _beat(client: redis.Redis, pid: int, *, ready: bool = True, interval_s: float = 5.0,
          rules: dict[str, object] | None = None) -> Heartbeat:
    readiness = Readiness(consumer=ready)
    hb = Heartbeat(client, PREFIX, interval_s=interval_s, identity={"pool": "threads", "concurrency": 4,
                                                                    "queue": "stq", "metrics_port": 0},
                   rules_versions=lambda: rules or {"deposit": {"version": 2, "hash": "ab" * 32}},
                   ledger_check=lambda: None, readiness=readiness, host="host-a", pid=pid)
    hb.beat()
    return hb


def test_a_healthy_system_has_no_problem(client: redis.Redis, redis_url: str, ledger: Ledger) -> None:
    """Redis and the ledger answer, one ready worker beats, nothing waits: healthy, the worker described."""
    _beat(client, 101)
    report = gather(_settings(redis_url), redis_client=client, ledger=ledger)
    assert report.problems == [] and report.healthy
    assert report.redis["answers"] and report.ledger["answers"]
    (worker,) = report.workers
    assert worker["id"] == "host-a:101" and worker["alive"] and worker["ready"]
    assert worker["pool"] == "threads" and worker["concurrency"] == 4 and worker["queue"] == "stq"
    assert worker["rules"] == {"deposit": {"version": 2, "hash": "ab" * 32}}
    assert report.to_dict()["healthy"] is True


def test_everything_that_needs_a_person_is_named(client: redis.Redis, redis_url: str, ledger: Ledger) -> None:
    """An old unprocessed notification, an open dead letter, an overdue review and no worker: four problems,
    each with what to do; the queue depth is counted over Celery's priority lists."""
    now = time.time()
    client.sadd(keys.pending(PREFIX), f"{int((now - 900) * 1000)}-0", f"{int(now * 1000)}-0")
    client.rpush("stq", "a", "b")
    client.rpush("stq\x06\x163", "c")
    ledger.write(None, TransactionRecord(transaction_id="tx-late", state=State.REVIEW, review_reason="test"))
    with ledger.engine.begin() as conn:
        conn.execute(update(tables.transactions).values(review_since=now - 7200))
    ledger.add_dead_letter("1-0", "tx-late", "unexpected KeyError", "unexpected_error", 3)
    report = gather(_settings(redis_url), redis_client=client, ledger=ledger, now=now)
    checks = {p.check: p for p in report.problems}
    assert set(checks) == {"unprocessed", "dead_letters", "review", "workers"}
    late = checks["unprocessed"].problem
    assert "1 notification archived more than 5 min ago and not finished (oldest 15 min)" in late
    assert "vipflow replay --unprocessed" in checks["unprocessed"].action
    assert "vipflow replay --dlq" in checks["dead_letters"].action
    assert "1 transaction waited for review longer than 60 min" in checks["review"].problem
    assert "no worker is alive" in checks["workers"].problem
    assert report.queue == {"name": "stq", "depth": 3}
    assert report.unprocessed["count"] == 2 and report.unprocessed["older_than_limit"] == 1


def test_unprocessed_counts_the_ledger_and_redis_once_each(client: redis.Redis, redis_url: str,
                                                         ledger: Ledger) -> None:
    """A notification the ledger holds unfinished and Redis lost (a restart) is counted, one in both once."""
    now_ms = int(time.time() * 1000)
    ledger.add_notification(archived_note(f"{now_ms - 1000}-0", "TXA1234567", received_at_ms=now_ms - 1000))
    ledger.add_notification(archived_note(f"{now_ms - 2000}-0", "TXB1234567", received_at_ms=now_ms - 2000))
    client.sadd(keys.pending(PREFIX), f"{now_ms - 1000}-0")
    _beat(client, 101)
    report = gather(_settings(redis_url), redis_client=client, ledger=ledger)
    assert report.unprocessed["count"] == 2
    assert report.unprocessed["in_redis"] == 1 and report.unprocessed["only_in_ledger"] == 1
    assert report.healthy, report.problems  # younger than status.unprocessed_after_s: not a problem yet


def test_a_worker_that_stopped_beating_is_missing_and_a_clean_stop_is_not(client: redis.Redis, redis_url: str,
                                                                         ledger: Ledger) -> None:
    """A worker whose heartbeat key expired is reported missing with its last description; one stopped
    cleanly is gone from the report."""
    _beat(client, 101)
    gone = _beat(client, 102)
    client.delete(keys.worker_heartbeat(PREFIX, "host-a:102"))  # its TTL ran out: what a kill leaves
    report = gather(_settings(redis_url), redis_client=client, ledger=ledger)
    missing = [w for w in report.workers if not w["alive"]]
    assert [w["id"] for w in missing] == ["host-a:102"] and missing[0]["pool"] == "threads"
    (problem,) = report.problems
    assert problem.check == "workers" and "worker host-a:102 stopped beating" in problem.problem
    stopped = _beat(client, 103)
    stopped.stop()
    gone.stop()
    assert {w.id for w in read_workers(client, PREFIX)} == {"host-a:101"}


def test_a_worker_not_ready_and_mixed_rules_versions(client: redis.Redis, redis_url: str, ledger: Ledger) -> None:
    """A worker whose consumer does not run is a problem naming why; two rules versions are a warning."""
    _beat(client, 101)
    _beat(client, 102, ready=False, rules={"deposit": {"version": 3, "hash": "cd" * 32}})
    report = gather(_settings(redis_url), redis_client=client, ledger=ledger)
    (problem,) = report.problems
    assert "worker host-a:102 is alive but not ready (consumer: Celery's consumer is not running" in problem.problem
    assert any("different rules versions" in w and "deposit v3" in w for w in report.warnings)


def test_redis_down_is_a_problem_and_the_ledger_is_still_read(ledger: Ledger) -> None:
    """Redis not answering: the first problem names its URL; the review queue is still read from the ledger."""
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    report = gather(_settings("redis://127.0.0.1:1/0"), redis_client=down, ledger=ledger)
    assert report.problems[0].check == "redis"
    assert "Redis at redis://127.0.0.1:1/0 does not answer (Connection refused" in report.problems[0].problem
    assert report.ledger["answers"] and report.review["waiting"] == 0
    assert report.redis["answers"] is False and report.workers == []


def test_ledger_down_is_a_problem_and_redis_is_still_read(client: redis.Redis, redis_url: str) -> None:
    """The ledger not answering is a problem naming its URL (no password); Redis's workers are still read."""
    _beat(client, 101)
    down = Ledger(make_engine("postgresql+psycopg://postgres:secret@127.0.0.1:1/nothing", pool_size=1))
    report = gather(_settings(redis_url), redis_client=client, ledger=down)
    (problem,) = report.problems
    assert problem.check == "ledger" and "127.0.0.1:1/nothing does not answer" in problem.problem
    assert "secret" not in json.dumps(report.to_dict())
    assert report.workers[0]["alive"]


def test_an_evicting_redis_is_a_problem(client: redis.Redis, redis_url: str, ledger: Ledger) -> None:
    """A maxmemory-policy other than noeviction is a problem (it may evict queued notifications)."""
    before = client.config_get("maxmemory-policy")["maxmemory-policy"]
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        _beat(client, 101)
        report = gather(_settings(redis_url), redis_client=client, ledger=ledger)
    finally:
        client.config_set("maxmemory-policy", before)
    (problem,) = report.problems
    assert problem.check == "redis" and "maxmemory-policy is allkeys-lru" in problem.problem


def test_the_screen_says_what_redis_down_leaves_unknown(ledger: Ledger) -> None:
    """With Redis down the screen says the workers are unknown and the unprocessed count is the ledger's
    alone, and ends with the problem and what to do."""
    from producers.commands.status_cmd import render

    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    lines = render(gather(_settings("redis://127.0.0.1:1/0"), redis_client=down, ledger=ledger).to_dict())
    assert "1 PROBLEM(S) NEED A PERSON" in lines[0]
    assert any("DOES NOT ANSWER (Connection refused)" in line for line in lines)
    assert "  workers   unknown: their heartbeats are in Redis, which could not be read" in lines
    assert any("(the ledger's count only: Redis does not answer)" in line for line in lines)
    assert lines[-1].startswith("  PROBLEM [redis] Redis at redis://127.0.0.1:1/0 does not answer")
    assert "do: start Redis or fix redis.url" in lines[-1]


def _with_db(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


def test_a_redis_database_number_the_server_lacks_is_bad_configuration(redis_url: str, ledger: Ledger) -> None:
    """redis.url ending /99 on a Redis with 16 databases: a configuration problem naming redis.url and the
    database number (not "does not answer", not "start Redis"); the screen says BAD CONFIGURATION."""
    from producers.commands.status_cmd import render

    url = _with_db(redis_url, 99)
    wrong = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))
    report = gather(_settings(url), redis_client=wrong, ledger=ledger)
    (problem,) = report.problems
    assert problem.check == "redis" and problem.config == "redis.url" and report.misconfigured
    assert "has no database 99 (DB index is out of range)" in problem.problem
    assert "fix the database number at the end of redis.url" in problem.action
    assert "start Redis" not in problem.action
    lines = render(report.to_dict())
    assert any("BAD CONFIGURATION, fix redis.url (DB index is out of range)" in line for line in lines)
    assert not any("DOES NOT ANSWER" in line for line in lines)


def test_a_redis_that_is_down_is_not_bad_configuration(ledger: Ledger) -> None:
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    report = gather(_settings("redis://127.0.0.1:1/0"), redis_client=down, ledger=ledger)
    assert not report.misconfigured and report.problems[0].config is None


def test_a_postgresql_database_that_does_not_exist_says_create_it_first(client: redis.Redis, redis_url: str,
                                                                        pg_url: str) -> None:
    """database.url naming a database the server lacks: create it (createdb), then vipflow db upgrade;
    never "vipflow db upgrade creates the schema" alone (it cannot create the database)."""
    from sqlalchemy.engine import make_url

    from producers.commands.status_cmd import render

    name = f"{make_url(pg_url).database}_missing"
    missing = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    led = Ledger(make_engine(missing, pool_size=1, create=False))
    try:
        report = gather(_settings(redis_url), redis_client=client, ledger=led)
    finally:
        led.close()
    (problem,) = [p for p in report.problems if p.check == "ledger"]
    assert problem.config == "database.url" and report.misconfigured
    assert f"the ledger's database {name!r} does not exist" in problem.problem
    assert f"create it first (createdb {name}" in problem.action and "then vipflow db upgrade" in problem.action
    assert any(f"NO SUCH DATABASE (database \"{name}\" does not exist): create it (createdb)" in line
               for line in render(report.to_dict()))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_empty_database_has_no_schema_rather_than_not_answering(client: redis.Redis, redis_url: str,
                                                                   kind: str, request: pytest.FixtureRequest) -> None:
    from producers.commands.status_cmd import render

    url = str(request.getfixturevalue("sqlite_url" if kind == "sqlite" else "pg_empty_url"))
    led = Ledger(make_engine(url, pool_size=1))  # created, never migrated
    try:
        report = gather(_settings(redis_url), redis_client=client, ledger=led)
    finally:
        led.close()
    (problem,) = [p for p in report.problems if p.check == "ledger"]
    assert "answers but has no schema" in problem.problem and problem.action == "run vipflow db upgrade"
    assert problem.config is None and not report.misconfigured
    assert report.ledger["answers"] and report.ledger["revision"] is None
    lines = render(report.to_dict())
    assert any("answers; NO SCHEMA: run vipflow db upgrade" in line for line in lines)
    assert not any("DOES NOT ANSWER" in line for line in lines)


def test_the_command_exits_2_for_bad_configuration_and_1_for_a_problem(redis_url: str, sqlite_url: str,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`vipflow status`: the whole report printed either way; exit 2 when the configuration is at fault."""
    import argparse

    from producers.commands.status_cmd import status_cmd

    Ledger.open(sqlite_url).close()
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    monkeypatch.setenv("VIPFLOW_REDIS__URL", _with_db(redis_url, 99))
    assert status_cmd(argparse.Namespace(json=True, config=None)) == 2
    shown = json.loads(capsys.readouterr().out)
    assert shown["problems"][0]["config"] == "redis.url" and shown["ledger"]["answers"]
    monkeypatch.setenv("VIPFLOW_REDIS__URL", "redis://127.0.0.1:1/0")
    assert status_cmd(argparse.Namespace(json=True, config=None)) == 1
