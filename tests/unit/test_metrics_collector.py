"""The scrape-time collector: queue depth, review queue size and age, dead letters, read from Redis."""

from __future__ import annotations

import time

import redis
from prometheus_client import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker.metrics import StoreCollector, registry_for
from worker.store.deadletters import DeadLetters
from worker.store.review import ReviewQueue


def _registry(client: redis.Redis, max_age_s: float = 3600) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StoreCollector(client, "mc", "mcq", max_age_s))
    return registry


def test_gauges_read_redis_at_scrape_time(redis_url: str) -> None:
    """Queue depth (all priority lists), review size, oldest age, overdue and dead letters match Redis."""
    client = redis.Redis.from_url(redis_url)
    client.rpush("mcq", "a", "b")
    client.rpush("mcq\x06\x163", "c")
    reviews = ReviewQueue(client, "mc")
    reviews.enqueue("tx-old", at=time.time() - 7200)
    reviews.enqueue("tx-new")
    DeadLetters(client, "mc").push("1-0", "tx-old", "unexpected KeyError", 3)
    reg = _registry(client)
    assert reg.get_sample_value("vipflow_queue_depth") == 3
    assert reg.get_sample_value("vipflow_review_queue_size") == 2
    assert 7190 < (reg.get_sample_value("vipflow_review_oldest_age_seconds") or 0) < 7300
    assert reg.get_sample_value("vipflow_review_overdue") == 1
    assert reg.get_sample_value("vipflow_dead_letter_list_size") == 1
    assert reg.get_sample_value("vipflow_store_up") == 1
    client.close()


def test_empty_review_queue_has_age_zero(redis_url: str) -> None:
    """No item waiting: size 0 and oldest age 0."""
    client = redis.Redis.from_url(redis_url)
    reg = _registry(client)
    assert (reg.get_sample_value("vipflow_review_queue_size"),
            reg.get_sample_value("vipflow_review_oldest_age_seconds")) == (0, 0)
    client.close()


def test_unreachable_redis_still_answers_the_scrape() -> None:
    """Redis down: the scrape gives vipflow_store_up 0 instead of failing."""
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    reg = _registry(client)
    assert reg.get_sample_value("vipflow_store_up") == 0
    assert reg.get_sample_value("vipflow_queue_depth") is None


def test_collector_joins_the_default_registry_without_clashing(redis_url: str) -> None:
    """The threads-pool registry takes the collector beside every counter (no duplicated names)."""
    client = redis.Redis.from_url(redis_url)
    collector = StoreCollector(client, "mc", "mcq", 3600)
    registry = registry_for(False, [collector])
    try:
        assert registry.get_sample_value("vipflow_store_up") == 1
    finally:
        registry.unregister(collector)
        client.close()
