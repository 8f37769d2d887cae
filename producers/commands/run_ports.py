"""The ports ``vipflow run`` needs, checked before it starts anything.

A health check proves only that something answers on a port, not that it is
the child just started: a simulator or ingestor left running from an earlier
run would answer for one that could not bind. So every port is tried first
(bound and released, as the servers themselves bind it), and a taken one stops
the run at once with one line naming the port, what needs it and the flag that
moves it.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from worker.errors import ConfigError


@dataclass(frozen=True)
class Need:
    """One port the demo listens on: who needs it, where, and the flag that changes it."""

    what: str  # e.g. "the ingestor"
    host: str
    port: int
    flag: str  # e.g. "--ingest-port"


class PortTaken(ConfigError):
    """A port the demo needs is taken (or given twice); the message names it and the flag that moves it."""

    def __init__(self, message: str, flag: str):
        self.message = message
        super().__init__(flag, message)

    def __str__(self) -> str:
        return self.message


def needs(settings: Any) -> list[Need]:
    """The ports the demo's children listen on, from ``settings`` (the worker's metrics only when on)."""
    vip, wallet = urlparse(settings.vip.base_url), urlparse(settings.wallet.url)
    out = [
        Need("the ingestor", settings.ingest.host, settings.ingest.port, "--ingest-port"),
        Need("the VIP Connect simulator", vip.hostname or "127.0.0.1", vip.port or 8090, "--vip-port"),
        Need("the wallet simulator", wallet.hostname or "127.0.0.1", wallet.port or 8091, "--wallet-port"),
    ]
    if settings.web.port:
        out.append(Need("the review workspace", settings.web.host, settings.web.port, "--web-port"))
    if settings.worker.metrics_port:
        out.append(Need("the worker's metrics", settings.worker.metrics_host, settings.worker.metrics_port,
                        "--metrics-port"))
    return out


def is_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound for listening right now (False when something listens there)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise ConfigError(f"{host}:{port}", f"cannot be listened on ({exc.strerror})") from None
    return True


def check(wanted: list[Need]) -> None:
    """PortTaken for the first port given twice or taken by another program."""
    seen: dict[int, Need] = {}
    for need in wanted:
        if need.port in seen:
            other = seen[need.port]
            raise PortTaken(f"port {need.port} is given to both {other.what} and {need.what}: "
                            f"choose another with {need.flag} PORT", need.flag)
        seen[need.port] = need
    for need in wanted:
        if not is_free(need.host, need.port):
            raise PortTaken(f"port {need.port} ({need.what}, {need.host}) is taken by another program: "
                            f"stop it, or choose another port with {need.flag} PORT", need.flag)


def check_redis_port(url: str) -> None:
    """PortTaken when nothing answers as Redis at ``url`` but its port is taken, so no embedded Redis can
    start there (call after finding that no Redis answers)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if host in ("127.0.0.1", "localhost", "::1") and not is_free(host, port):
        raise PortTaken(f"port {port} (Redis, {url.split('@')[-1]}) is taken by a program that does not answer "
                        "as Redis: stop it, or give another with --redis-url redis://127.0.0.1:PORT/0",
                        "--redis-url")
