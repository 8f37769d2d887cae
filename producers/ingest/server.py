"""Running the ingestor under uvicorn."""

from __future__ import annotations

import gc

from worker.config import Settings


def serve(settings: Settings) -> None:
    """Serve the ingestor on ``ingest.host:port`` in this process until interrupted; ConfigError before
    listening when no verification key is configured.

    One process, no access log (the app logs what matters, masked). To use more
    cores, run several of these behind a load balancer, or one per port; the
    store's guarantees hold across processes because they live in Redis. ListenError naming the
    address when it cannot be listened on (bound here, before uvicorn starts, so that the error says so).
    """
    import logging

    import uvicorn

    from producers.ingest.app import create_app
    from producers.listen import bind
    from worker.config_report import redis_summary
    from worker.logs import configure_logging
    from worker.masking import operator_hosts

    configure_logging(settings.log.level, hosts=operator_hosts(settings))
    app = create_app(settings)  # ConfigError (exit code 2) before listening: no verification key
    logging.getLogger("vipflow.ingest").info(
        "ingest starting on %s:%d: Redis %s", settings.ingest.host, settings.ingest.port, redis_summary(settings))
    # Everything built so far lives as long as the process: keep it out of the
    # collector's scans, which otherwise show up as latency spikes.
    gc.freeze()
    sock = bind(settings.ingest.host, settings.ingest.port, port_option="--port (or ingest.port)",
                host_option="--host (or ingest.host)")
    # uvicorn says nothing of where it listens when given a socket: the line `vipflow run` waits for.
    logging.getLogger("vipflow.ingest").info(
        "ingest listening on http://%s:%d", settings.ingest.host, sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        host=settings.ingest.host,
        port=settings.ingest.port,
        access_log=False,
        log_config=None,  # keep our JSON handler on the root logger
        server_header=False,
        proxy_headers=False,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
