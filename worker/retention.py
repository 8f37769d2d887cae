"""Archive retention: trim archived notifications older than ``archive.retention_days``.

Beat-free: ``vipflow worker`` runs :class:`ArchiveTrimmer` in a daemon thread
that trims once at start and then every ``archive.trim_interval_s``. Several
workers trimming at once is harmless (``XTRIM MINID`` is idempotent). What is
trimmed is gone for replay and backtests; transaction records stay.
"""

from __future__ import annotations

import logging
import threading

from worker.store.archive import Archive, now_ms

log = logging.getLogger("vipflow.retention")
DAY_MS = 86_400_000


def trim_archive(archive: Archive, retention_days: float, now: int | None = None) -> int:
    """Trim entries received more than ``retention_days`` before ``now`` (epoch ms); how many went."""
    cut = (now_ms() if now is None else now) - int(retention_days * DAY_MS)
    removed = archive.trim_older_than(cut)
    if removed:
        log.info("archive trimmed", extra={"removed": removed, "retention_days": retention_days})
    return removed


class ArchiveTrimmer:
    """Trims the archive now and every ``interval_s`` seconds in a daemon thread."""

    def __init__(self, archive: Archive, retention_days: float, interval_s: float):
        self._archive = archive
        self._days = retention_days
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vipflow-archive-trim", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits for a trim in progress)."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            try:
                trim_archive(self._archive, self._days)
            except Exception as exc:  # noqa: BLE001 - the next round tries again; the worker goes on
                log.warning("archive trim failed (%s); trying again later", type(exc).__name__)
            if self._stop.wait(self._interval_s):
                return
