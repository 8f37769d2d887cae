"""Listening sockets for vipflow's servers, bound before the server starts so a taken port is named."""

from __future__ import annotations

import errno
import socket

from worker.errors import ListenError

_PROBLEMS = {errno.EADDRINUSE: "the port is taken by another process",
             errno.EADDRNOTAVAIL: "the address is not one of this machine's",
             errno.EACCES: "not allowed (ports below 1024 need privileges)"}


def bind(host: str, port: int, *, port_option: str, host_option: str, nodelay: bool = False) -> socket.socket:
    """A non-blocking socket listening on ``host:port`` (0: any free port); ListenError naming the
    address, why, and the option that changes it (``port_option`` or ``host_option``) when it cannot."""
    other_port = f"stop what uses it, or choose another port with {port_option} (0 = any free port)"
    other_host = f"choose an address of this machine with {host_option} (127.0.0.1, or 0.0.0.0 for all)"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(host, port, f"not an address ({exc.strerror})", other_host) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        problem = _PROBLEMS.get(exc.errno or 0, exc.strerror or "refused")
        raise ListenError(host, port, problem, other_host if exc.errno == errno.EADDRNOTAVAIL else other_port) \
            from None
    sock.setblocking(False)
    return sock
