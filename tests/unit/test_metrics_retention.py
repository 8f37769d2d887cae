"""Archive retention: entries older than archive.retention_days are trimmed, newer ones stay."""

from __future__ import annotations

import redis

from worker.retention import DAY_MS, trim_archive
from worker.store.archive import Archive, now_ms


def test_trim_drops_what_is_older_than_the_retention(redis_url: str) -> None:
    """With 30 days of retention, a cut 31 days on removes both entries; 29 days on removes none."""
    client = redis.Redis.from_url(redis_url)
    archive = Archive(client, "rt")
    for n in range(2):
        archive.append("deposit", b"{}", status="valid", transaction_id=f"rt{n}", error=None)
    assert trim_archive(archive, 30, now=now_ms() + 29 * DAY_MS) == 0
    assert trim_archive(archive, 30, now=now_ms() + 31 * DAY_MS) == 2
    assert list(archive.iter_range()) == []
    client.close()
