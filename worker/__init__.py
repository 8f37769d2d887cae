"""vipflow's worker: the Celery app and tasks, configuration, VIP Connect client,
wallet adapters, the Redis store, enrichment and actions.

``celery -A worker worker`` finds the app through ``worker.app``, built lazily so
that importing ``worker.config`` (as ``vipflow rules ...`` does) stays cheap.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from worker.celery_app import get_app

        return get_app()
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
