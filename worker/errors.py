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


class InputError(VipflowError):
    """What a person asked a command for cannot be done as asked (an option, an id, a file); the message
    names the input and what to give instead. The command exits 2, as for a bad configuration."""


class NoLedger(InputError):
    """A command that only reads the ledger found no SQLite file at ``database.url``: it creates none
    (an empty ledger would answer "no such transaction", "0 waiting"); the message names the path."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(f"no ledger at {path} (database.url; a relative sqlite path is relative to the current "
                         "directory): run from where the ledger is, or set database.url")


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


class ListenError(VipflowError):
    """A server could not listen on its address (the port is taken, or the address is not this host's);
    the message names the address, why, and what to change."""

    def __init__(self, host: str, port: int, problem: str, advice: str):
        self.host, self.port, self.problem = host, port, problem
        super().__init__(f"cannot listen on {host}:{port}: {problem}; {advice}")


def reason(exc: BaseException) -> str:
    """What went wrong, in the words of the system that failed and without Python's class names:
    ``Connection refused``, ``DB index is out of range``, ``unable to open database file``. The first
    line of the driver's message (SQLAlchemy's wrapper unwrapped), its last clause when it says where
    first; the class name only when the error says nothing else. Never carries a password: drivers
    do not put one in their messages."""
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    if isinstance(orig, BaseException):
        exc = orig
    system = _system_error(exc)
    if system is not None:
        return system
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if text.startswith("No master found for "):  # redis-py's Sentinel: the name, then every sentinel's repr
        return "no sentinel answering knows a master named " + text[len("No master found for "):].split(" : ")[0]
    if " connecting to " in text and ". " in text:  # redis-py: "Error 111 connecting to h:p. Connection refused."
        text = text.rsplit(". ", 1)[1]
    elif text.startswith("connection failed: ") and ": " in text[19:]:  # psycopg: "... at "h", port p failed: X"
        text = text.rsplit(": ", 1)[1]
    text = text.strip().rstrip(".").replace("FATAL:  ", "")
    return text[:200] or type(exc).__name__


def _system_error(exc: BaseException) -> str | None:
    """The operating system's words (``Connection refused``) when ``exc`` wraps an OSError that has them:
    requests -> urllib3 -> socket errors nest several levels deep (``reason``, ``args``, causes)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 12:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        related = [getattr(current, "reason", None), *current.args, current.__cause__, current.__context__]
        todo.extend(r for r in related if isinstance(r, BaseException))
    return None
