"""The worker's HTTP port: ``/metrics`` (Prometheus), ``/healthz`` (liveness) and ``/readyz`` (readiness).

- ``GET /healthz``: 200 ``{"status": "ok"}`` while the worker's heartbeat thread runs its rounds (within
  three ``worker.heartbeat_interval_s``); 503 when it stopped, i.e. the process is wedged and a restart
  may help. Redis or the ledger being down does not fail it: restarting a worker does not bring them back.
- ``GET /readyz``: 200 ``{"status": "ready"}`` when Celery's consumer runs and the last heartbeat round
  reached Redis and the ledger; else 503 ``{"status": "not ready", "problems": {check: why}}``.
- anything else: the Prometheus metrics (as prometheus-client's own server answers every path).

Answers carry the checks' reasons (a driver's message, never a URL's password) and nothing personal.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from worker.heartbeat import Readiness

log = logging.getLogger("vipflow.metrics")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                            ("Cache-Control", "no-store")])
    return [data]


def health_app(registry: CollectorRegistry, readiness: Readiness | None, interval_s: float) -> WsgiApp:
    """The WSGI app of the worker's port (see the module); without ``readiness`` (no heartbeat) the two
    probes answer 200 with ``"checks": "off"``."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ("/healthz", "/readyz"):
            return metrics(environ, start_response)  # type: ignore[no-any-return]  # untyped upstream
        if readiness is None:
            return _json(start_response, "200 OK", {"status": "ok", "checks": "off"})
        if path == "/healthz":
            if readiness.alive(interval_s):
                return _json(start_response, "200 OK", {"status": "ok"})
            return _json(start_response, "503 Service Unavailable",
                         {"status": "stalled", "problem": "the heartbeat thread has not run for "
                                                          f"{3 * interval_s:g} s"})
        problems = readiness.problems()
        if not problems:
            return _json(start_response, "200 OK", {"status": "ready"})
        return _json(start_response, "503 Service Unavailable", {"status": "not ready", "problems": problems})

    return app


def serve(port: int, host: str, app: WsgiApp) -> tuple[int, Callable[[], None]] | None:
    """Serve ``app`` on ``host:port`` (0: any free port) in a daemon thread: (the port bound, a function that
    stops it), or None (logged) when the port is taken."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]  # "::" needs AF_INET6
        server_class = type("_Server", (_ThreadingServer,), {"address_family": family})
        server: WSGIServer = make_server(host, port, app, server_class, handler_class=_QuietHandler)
    except OSError as exc:
        log.error("metrics port %s:%d unavailable (%s); the worker runs without metrics and health checks",
                  host, port, exc.strerror, extra={"port": port})
        return None
    threading.Thread(target=server.serve_forever, name="vipflow-metrics", daemon=True).start()
    bound = int(server.server_port)
    log.info("metrics on http://%s:%d/metrics (health: /healthz, /readyz)", host, bound, extra={"port": bound})

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return bound, stop
