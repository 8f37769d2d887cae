"""JSON-lines logging through the standard library, masked on the way out.

Every record becomes one JSON object: ``ts``, ``level``, ``logger``, ``msg``
and any ``extra=`` fields. The message runs through ``mask_text`` and the extra
fields through ``mask_mapping``, so a token, card number or a patron's IP address
that reaches a log call is masked before it is written (the operator's own
addresses stay readable: ``worker.masking``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from worker.masking import keep_operator_hosts, mask_mapping, mask_text

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one masked JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line, personal data and secrets masked."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if extra:
            out.update(mask_mapping(extra))
        if record.exc_info:
            out["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


_PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def configure_logging(level: str = "INFO", stream: TextIO | None = None, hosts: Iterable[str] = ()) -> None:
    """Send the root logger's records to ``stream`` (stderr) as masked JSON lines at ``level``; the IP
    addresses among ``hosts`` (``worker.masking.operator_hosts``) are the operator's own, left in clear."""
    keep_operator_hosts(hosts)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Celery's two lines per task ("received", "succeeded in") say less than the pipeline's own
    # "decided"/"approved" lines, which carry the transaction id, and cost a masked JSON line each:
    # they show at DEBUG only. Celery's warnings and errors still show at every level.
    quiet = logging.DEBUG if logging.getLevelName(level) == logging.DEBUG else logging.WARNING
    for name in _PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
