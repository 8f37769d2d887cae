"""Running ``vipflow web`` under uvicorn."""

from __future__ import annotations

from worker.config import Settings


def serve(settings: Settings) -> None:
    """Serve the API on ``web.host:web.port`` in this process until interrupted (no access log: the
    ledger records every authenticated use, and the app logs what matters, masked). ListenError naming
    the address and the option that moves it when it cannot be listened on (bound here, before uvicorn
    starts, so that the error says so in one line)."""
    import logging

    import uvicorn

    from producers.listen import bind
    from producers.web.app import create_app
    from worker.logs import configure_logging

    configure_logging(settings.log.level)
    # Bound first: a taken port is the one line said, before anything the app logs while it is built.
    sock = bind(settings.web.host, settings.web.port, port_option="--port (or web.port)",
                host_option="--host (or web.host)")
    try:
        app = create_app(settings)
        # uvicorn says nothing of where it listens when given a socket: say it once bound.
        logging.getLogger("vipflow.web").info("web listening on http://%s:%d", settings.web.host,
                                              sock.getsockname()[1])
        config = uvicorn.Config(app, host=settings.web.host, port=settings.web.port, access_log=False,
                                log_config=None, server_header=False, proxy_headers=False)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
