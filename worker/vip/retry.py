"""How long to wait before trying VIP Connect again, and retrying calls that are safe to repeat.

The wait is full-jitter exponential backoff (``vip.backoff_base_s`` doubling up to
``vip.backoff_max_s``), or VIP's own ``Retry-After`` when a 429 or 503 gives one and
it asks for longer, never past ``vip.backoff_max_s``. Approvals are repeated only
through ``worker.vip.approve`` (which reconciles first); a read such as the account
inquiry is simply asked again with :func:`retried`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from worker.errors import VipTransientError
from worker.metrics import RETRIES

T = TypeVar("T")


def backoff_delay(
    attempt: int, base_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max_s, base_s * 2**(attempt-1))]."""
    return rand() * min(max_s, base_s * 2.0 ** max(attempt - 1, 0))


def wait_s(attempt: int, retry_after_s: float | None, base_s: float, max_s: float,
           rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt ``attempt``: the backoff, or VIP's Retry-After when it asks
    for longer, capped at ``max_s``."""
    backoff = backoff_delay(attempt, base_s, max_s, rand)
    return backoff if retry_after_s is None else max(backoff, min(retry_after_s, max_s))


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and backoff for a call that is safe to repeat (``vip.*`` settings)."""

    max_attempts: int
    base_s: float
    max_s: float
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)


def retried(policy: RetryPolicy, call: Callable[[], T], what: str) -> T:
    """``call()``, repeated on VipTransientError up to ``policy.max_attempts`` times in all; the last
    VipTransientError is raised when every attempt failed. ``what`` labels the retries metric."""
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return call()
        except VipTransientError as exc:
            if attempt >= policy.max_attempts:
                raise
            RETRIES.labels(what).inc()
            policy.sleep(wait_s(attempt, exc.retry_after_s, policy.base_s, policy.max_s))
    raise AssertionError("unreachable")  # pragma: no cover
