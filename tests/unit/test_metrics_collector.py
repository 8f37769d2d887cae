"""The scrape-time collector: queue depth and pending buffer from Redis; review queue and dead letters from the
ledger; each store's failure answers its own ``_up 0``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import update

from worker.ledger import Ledger, State, TransactionRecord, tables
from worker.ledger.schema import make_engine
from worker.metrics import StoreCollector, registry_for
from worker.store import keys


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def _down_redis() -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


def _down_ledger() -> Ledger:
    return Ledger(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nothing", pool_size=1))


def _registry(client: redis.Redis, ledger: Ledger, max_age_s: float = 3600) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StoreCollector(client, "mc", "mcq", max_age_s, ledger))
    return registry


def _in_review(ledger: Ledger, txid: str, since: float | None = None) -> None:
    ledger.write(None, TransactionRecord(transaction_id=txid, state=State.REVIEW, review_reason="test"))
    if since is not None:
        with ledger.engine.begin() as conn:
            conn.execute(update(tables.transactions).where(tables.transactions.c.transaction_id == txid)
                         .values(review_since=since))


def test_gauges_read_redis_and_the_ledger_at_scrape_time(client: redis.Redis, ledger: Ledger) -> None:
    """Queue depth (all priority lists) and pending entries match Redis; review size, oldest age, overdue
    and dead letters match the ledger."""
    client.rpush("mcq", "a", "b")
    client.rpush("mcq\x06\x163", "c")
    client.sadd(keys.pending("mc"), "1-0", "2-0")
    _in_review(ledger, "tx-old", since=time.time() - 7200)
    _in_review(ledger, "tx-new")
    ledger.add_dead_letter("1-0", "tx-old", "unexpected KeyError", "unexpected_error", 3)
    reg = _registry(client, ledger)
    assert reg.get_sample_value("vipflow_store_up") == 1
    assert reg.get_sample_value("vipflow_queue_depth") == 3
    assert reg.get_sample_value("vipflow_archive_pending") == 2
    assert reg.get_sample_value("vipflow_ledger_up") == 1
    assert reg.get_sample_value("vipflow_review_queue_size") == 2
    assert 7190 < (reg.get_sample_value("vipflow_review_oldest_age_seconds") or 0) < 7300
    assert reg.get_sample_value("vipflow_review_overdue") == 1
    assert reg.get_sample_value("vipflow_dead_letter_list_size") == 1


def test_a_dead_letter_counts_until_its_transaction_is_final(client: redis.Redis, ledger: Ledger) -> None:
    """A dead letter queued again still counts; once its transaction is final it leaves the gauge (it stays
    in the ledger)."""
    ledger.add_dead_letter("1-0", "tx1", "unexpected KeyError", "unexpected_error", 3)
    ledger.mark_requeued("1-0")
    assert _registry(client, ledger).get_sample_value("vipflow_dead_letter_list_size") == 1
    ledger.write(None, TransactionRecord("tx1", transaction_type="deposit").moved(State.REJECTED))
    assert _registry(client, ledger).get_sample_value("vipflow_dead_letter_list_size") == 0


def test_empty_review_queue_has_age_zero(client: redis.Redis, ledger: Ledger) -> None:
    """No transaction waiting: size 0 and oldest age 0."""
    reg = _registry(client, ledger)
    assert (reg.get_sample_value("vipflow_review_queue_size"),
            reg.get_sample_value("vipflow_review_oldest_age_seconds")) == (0, 0)


def test_unreachable_redis_still_answers_the_scrape(ledger: Ledger) -> None:
    """Redis down: vipflow_store_up 0 and no Redis gauges, while the ledger's gauges still answer."""
    _in_review(ledger, "tx1")
    reg = _registry(_down_redis(), ledger)
    assert reg.get_sample_value("vipflow_store_up") == 0
    assert reg.get_sample_value("vipflow_queue_depth") is None
    assert reg.get_sample_value("vipflow_ledger_up") == 1
    assert reg.get_sample_value("vipflow_review_queue_size") == 1


def test_unreachable_ledger_still_answers_the_scrape(client: redis.Redis) -> None:
    """The ledger's database down: vipflow_ledger_up 0 and no ledger gauges, while Redis's still answer."""
    client.rpush("mcq", "a")
    reg = _registry(client, _down_ledger())
    assert reg.get_sample_value("vipflow_ledger_up") == 0
    assert reg.get_sample_value("vipflow_review_queue_size") is None
    assert reg.get_sample_value("vipflow_store_up") == 1
    assert reg.get_sample_value("vipflow_queue_depth") == 1


class _CountingLedger(Ledger):
    """The real ledger, counting the scrapes that reach it."""

    reads = 0

    def review_stats(self, max_age_s: float, now: float | None = None) -> tuple[int, float, int]:
        self.reads += 1
        return super().review_stats(max_age_s, now)


def test_registering_reads_neither_store(client: redis.Redis, sqlite_url: str) -> None:
    """Registering the collector (at worker start, before a prefork pool forks) does not query the ledger;
    the first scrape does."""
    ledger = _CountingLedger(Ledger.open(sqlite_url).engine)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StoreCollector(client, "mc", "mcq", 3600, ledger))
    assert ledger.reads == 0
    assert registry.get_sample_value("vipflow_ledger_up") == 1 and ledger.reads == 1


def test_collector_joins_the_default_registry_without_clashing(client: redis.Redis, ledger: Ledger) -> None:
    """The threads-pool registry takes the collector beside every counter (no duplicated names)."""
    collector = StoreCollector(client, "mc", "mcq", 3600, ledger)
    registry = registry_for(False, [collector])
    try:
        assert registry.get_sample_value("vipflow_store_up") == 1
        assert registry.get_sample_value("vipflow_ledger_up") == 1
    finally:
        registry.unregister(collector)
