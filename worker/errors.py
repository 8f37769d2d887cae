"""The worker's error sub-bases; the whole tree is drawn in ``rules.errors``."""

from __future__ import annotations

from typing import Any

from rules.errors import VipflowError


class ConfigError(VipflowError):
    """A configuration key has a bad value; the message names the key."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"configuration: {key}: {problem}")


class NotificationError(VipflowError):
    """A body that is not a valid VIP Connect notification; names the field."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class VipApiError(VipflowError):
    """A call to the VIP Connect API failed."""


class VipTransientError(VipApiError):
    """5xx, timeout or refused connection: the call may be retried.

    ``maybe_sent`` is False only when the request certainly never reached VIP
    Connect (connection refused): otherwise reconcile before repeating an approval.
    ``retry_after_s`` is VIP's ``Retry-After`` (a 429 or 503), in seconds, when it gave one.
    """

    def __init__(self, message: str, *, maybe_sent: bool = True, status: int | None = None,
                 retry_after_s: float | None = None):
        self.maybe_sent = maybe_sent
        self.status = status
        self.retry_after_s = retry_after_s
        super().__init__(message)


class VipRejectedError(VipApiError):
    """VIP Connect answered 4xx (or a non-Success result): not retried."""

    def __init__(self, status: int, body: dict[str, Any] | str | None, message: str):
        self.status = status
        self.body = body
        super().__init__(message)


class WalletError(VipflowError):
    """The operator's wallet refused or failed an operation."""


class WalletRefusedError(WalletError):
    """The wallet refused an operation; ``reason`` says why (e.g. ``insufficient_funds``)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


class WalletTransientError(WalletError):
    """The wallet could not be reached or answered 5xx: may be retried."""


class StoreError(VipflowError):
    """Redis or the ledger is unreachable or holds something vipflow did not expect: retried."""


class LedgerUnavailable(StoreError):
    """The ledger's database failed or did not answer (the work is retried; nothing is lost)."""


class LedgerError(VipflowError):
    """The ledger refused something: an illegal state change, a schema older than the code."""


class SchemaOutdated(LedgerError):
    """The ledger's schema is older (or newer) than this code; the message names the command to run."""
