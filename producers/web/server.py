"""Running ``vipflow web`` under uvicorn."""

from __future__ import annotations

from worker.config import Settings


def serve(settings: Settings) -> None:
    """Serve the API on ``web.host:web.port`` in this process until interrupted (no access log: the
    ledger records every authenticated use, and the app logs what matters, masked)."""
    import uvicorn

    from producers.web.app import create_app
    from worker.logs import configure_logging

    configure_logging(settings.log.level)
    app = create_app(settings)
    uvicorn.run(app, host=settings.web.host, port=settings.web.port, access_log=False, log_config=None,
                server_header=False, proxy_headers=False)
