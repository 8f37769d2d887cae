"""The ingestor's Prometheus metrics: labels carry routes, results and status codes, never ids or PII."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import Counter

RECEIVED = Counter(
    "vipflow_notifications_received_total",
    "Notification requests received by the ingestor, by route and result",
    ["route", "result"],
)
RESPONSES = Counter(
    "vipflow_ingest_responses_total",
    "Every HTTP answer of the ingestor, by route (deposit, withdraw, error, healthz, readyz, metrics, other) "
    "and status code; a 500 from an unexpected exception included",
    ["route", "code"],
)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class CountResponses:
    """ASGI middleware counting each HTTP answer in ``vipflow_ingest_responses_total``. ``routes`` maps a
    path to its label; any other path is ``other`` (a closed set: a scanner's paths never become labels).
    A request whose handler raised before answering is counted as 500, the answer Starlette then gives."""

    def __init__(self, app: Asgi, routes: Mapping[str, str]):
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count the status of its answer."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        route = self.routes.get(str(scope.get("path", "")), "other")
        answered = False

        async def counting(message: Message) -> None:
            nonlocal answered
            if message.get("type") == "http.response.start":
                answered = True
                RESPONSES.labels(route, str(message.get("status", 0))).inc()
            await send(message)

        try:
            await self.app(scope, receive, counting)
        except BaseException:
            if not answered:
                RESPONSES.labels(route, "500").inc()
            raise
