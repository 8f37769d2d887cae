"""URLs in the configuration: checked when it is loaded, shown without their passwords.

The checks raise ValueError with a message that says what is wrong and what a
good value looks like, never echoing the value (it may hold a password); the
configuration loader puts the key in front of it.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

HTTP_SCHEMES = ("http", "https")
REDIS_SCHEMES = ("redis", "rediss", "unix")
HTTP_FORM = "http://HOST[:PORT][/PATH] or https://..."
DATABASE_FORM = "sqlite:///PATH or postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
REDIS_FORM = "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (rediss:// with TLS, unix:///PATH.sock?db=DB)"


def _split(value: str, form: str) -> SplitResult:
    if not value or value != value.strip() or any(c.isspace() for c in value):
        raise ValueError(f"is not a URL (empty or holds spaces); expected {form}")
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - reading it is the check: a port that is not 0-65535 raises
    except ValueError:
        raise ValueError(f"has a port that is not a number from 0 to 65535; expected {form}") from None
    return parts


def _scheme(parts: SplitResult, allowed: tuple[str, ...], form: str) -> None:
    if parts.scheme.lower() not in allowed:
        shown = f"'{parts.scheme}'" if parts.scheme else "no scheme"
        raise ValueError(f"has {shown} where {' or '.join(s + '://' for s in allowed)} belongs; expected {form}")


def check_http_url(value: str) -> str:
    """``value`` when it is an http(s) URL with a host; ValueError saying what is wrong otherwise."""
    parts = _split(value, HTTP_FORM)
    _scheme(parts, HTTP_SCHEMES, HTTP_FORM)
    if not parts.hostname:
        raise ValueError(f"has no host; expected {HTTP_FORM}")
    if parts.query or parts.fragment:
        raise ValueError(f"must not carry a query or fragment; expected {HTTP_FORM}")
    return value


def check_redis_url(value: str) -> str:
    """``value`` when redis-py can connect with it (host, port and database number well formed);
    ValueError saying what is wrong otherwise."""
    parts = _split(value, REDIS_FORM)
    _scheme(parts, REDIS_SCHEMES, REDIS_FORM)
    if parts.scheme.lower() == "unix":
        if not parts.path:
            raise ValueError(f"names no socket path; expected {REDIS_FORM}")
        return value
    if not parts.hostname:
        raise ValueError(f"has no host; expected {REDIS_FORM}")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"has a database '{db}' that is not a number; expected {REDIS_FORM}")
    return value


SENTINEL_FORM = "HOST:PORT (a Redis Sentinel, e.g. 10.0.0.5:26379 or [fd00::5]:26379)"


def check_sentinel(value: str) -> str:
    """``value`` when it is one Sentinel's ``HOST:PORT`` (IPv6 in brackets); ValueError saying what is wrong
    otherwise (the value is not echoed)."""
    if not value or any(c.isspace() for c in value) or "/" in value or "@" in value:
        raise ValueError(f"a sentinel is not HOST:PORT (empty, or holds spaces, '/' or '@'); expected {SENTINEL_FORM}")
    host, sep, port = value.rpartition(":")
    if not sep or not host.strip("[]"):
        raise ValueError(f"a sentinel has no host or no port; expected {SENTINEL_FORM}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"a sentinel's port is not a number from 1 to 65535; expected {SENTINEL_FORM}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"a sentinel's IPv6 address must be in brackets; expected {SENTINEL_FORM}")
    return value


def sentinel_address(value: str) -> tuple[str, int]:
    """``("10.0.0.5", 26379)`` from a checked ``HOST:PORT`` (brackets of an IPv6 address removed)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def check_database_url(value: str) -> str:
    """``value`` when it names a ledger vipflow can open (an SQLite file or PostgreSQL); ValueError otherwise.

    An in-memory SQLite database is refused: it keeps nothing and no two processes share it.
    """
    if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
        raise ValueError(f"use {DATABASE_FORM}")
    if value.startswith("postgresql"):
        _split(value, DATABASE_FORM)
        return value
    path = value.removeprefix("sqlite:///")
    if not path.strip() or path.startswith(":memory:") or "mode=memory" in path:
        raise ValueError("an in-memory SQLite ledger keeps nothing and no two processes share it; "
                         "name a file: sqlite:///PATH")
    return value


def check_path(value: str) -> str:
    """``value`` when it is an absolute URL path (``/api/...``); ValueError otherwise."""
    if not value.startswith("/") or any(c.isspace() for c in value) or "?" in value or "#" in value:
        raise ValueError("must be a URL path starting with '/', without spaces, query or fragment")
    return value


def redis_db(url: str) -> int:
    """The database number a Redis URL selects (its path, else ``?db=``, else 0)."""
    parts = urlsplit(url)
    path_db = parts.path.strip("/") if parts.scheme.lower() != "unix" else ""
    if path_db.isdigit():
        return int(path_db)
    for pair in parts.query.split("&"):
        name, _, number = pair.partition("=")
        if name == "db" and number.isdigit():
            return int(number)
    return 0


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (user names and everything else kept)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
