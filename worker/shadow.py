"""Shadow rules: a candidate rule set decided beside the live one, recorded and counted, never acted on.

``rules.shadow`` names a rule directory loaded like the live one (its own
``RuleHolder``: the same acceptance checks, the same hot reload). Each time the
live rules decide a transaction, the shadow decides the same facts; the result
is stored on the record as ``shadow_decision`` and counted by live-versus-shadow
outcome pair, so operators can watch a change on live traffic before promoting it.
A shadow that fails never touches the live decision: the failure is recorded instead.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from rules import Decision, RuleBook
from rules.errors import VipflowError
from rules.lists import EMPTY, ListLookup
from worker.config import Settings
from worker.metrics import SHADOW_DECISIONS
from worker.reload import RuleHolder

log = logging.getLogger("vipflow.shadow")


def shadow_holder(settings: Settings, accept: Callable[[RuleBook], None] | None = None) -> RuleHolder | None:
    """The shadow rules' holder when ``rules.shadow`` is set (loaded and verified now, and passing ``accept``
    as ``RuleHolder`` takes it), else None."""
    if settings.rules.shadow is None:
        return None
    return RuleHolder(settings.rules.shadow, accept=accept)


def start_reloading(holder: RuleHolder, interval_s: float, *, sighup: bool) -> None:
    """Re-check the shadow files every ``interval_s`` and, with ``sighup``, on SIGHUP too.

    The live holder already owns SIGHUP; the shadow's handler runs after it
    rather than replacing it.
    """
    holder.start(interval_s, sighup=False)
    if not (sighup and threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP")):
        return
    previous = signal.getsignal(signal.SIGHUP)

    def on_sighup(signum: int, frame: Any) -> None:
        if callable(previous):
            previous(signum, frame)
        threading.Thread(target=holder.check, name="vipflow-shadow-sighup", daemon=True).start()

    signal.signal(signal.SIGHUP, on_sighup)


class BookSource(Protocol):
    """Anything with the rule book in force (``RuleHolder``)."""

    def current(self) -> RuleBook:
        """The rule book in force now."""
        ...


def decide_shadow(source: BookSource, transaction_type: str, facts: Mapping[str, Any], live: Decision,
                  transaction_id: str, lists: ListLookup = EMPTY) -> dict[str, Any]:
    """The shadow decision for the live decision's facts and lists, as recorded; never raises.

    Any failure gives ``{"error": ...}`` (counted as shadow outcome ``error``).
    """
    try:
        book = source.current()
        shadow = book.decide(transaction_type, facts, lists)
    except Exception as exc:  # noqa: BLE001 - the candidate must never break the live decision
        log.warning("shadow rules could not decide", extra={
            "transaction_id": transaction_id, "error": type(exc).__name__})
        problem = str(exc) if isinstance(exc, VipflowError) else f"unexpected {type(exc).__name__}"
        return {"error": f"{problem} while deciding with the shadow rules"}
    if shadow.outcome != live.outcome:
        log.info("shadow differs", extra={
            "transaction_id": transaction_id, "outcome": live.outcome, "shadow_outcome": shadow.outcome,
            "shadow_matched": list(shadow.matched_ids), "shadow_version": shadow.version})
    return shadow.to_dict()


def count_shadow(live_outcome: str, shadow: Mapping[str, Any]) -> None:
    """Count a recorded shadow decision by (live outcome, shadow outcome or ``error``)."""
    SHADOW_DECISIONS.labels(live_outcome, str(shadow.get("outcome") or "error")).inc()
