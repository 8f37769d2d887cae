"""The Redis store. This part: connections and key names, the notification
archive (the record of truth), and intake (archive + de-duplicate + enqueue).
"""

from __future__ import annotations

from worker.store.archive import Archive, ArchivedNotification
from worker.store.connection import connect, key
from worker.store.intake import Intake, IntakeResult
from worker.store.publisher import CeleryPublisher, MemoryPublisher, Publisher

__all__ = [
    "Archive",
    "ArchivedNotification",
    "CeleryPublisher",
    "Intake",
    "IntakeResult",
    "MemoryPublisher",
    "Publisher",
    "connect",
    "key",
]
