"""python -m gateway: serve the REST API with uvicorn (uvloop + httptools)."""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

from gateway import metrics as gateway_metrics
from gateway.app import create_app
from gateway.serving import uvicorn_options
from libs import tracing
from libs.logging import configure_logging, flush_logs_on_sigterm
from libs.settings import Settings


def worker_app() -> FastAPI:
    """The app of one worker process when GATEWAY_WORKERS > 1 (uvicorn imports this factory)."""
    settings = Settings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    flush_logs_on_sigterm()
    tracing.configure(settings, "gateway")
    return create_app(settings)


def main() -> None:
    settings = Settings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    flush_logs_on_sigterm()
    # One process runs Python on one core at a time: more workers let the gateway use more.
    workers = settings.gateway_workers
    if workers == 1:  # otherwise each worker sets up its own (worker_app)
        tracing.configure(settings, "gateway")
    try:
        gateway_metrics.prepare_process(settings, workers)
    except OSError as error:
        sys.exit(f"gateway: metrics port: {error}")
    uvicorn.run(
        "gateway.__main__:worker_app" if workers > 1 else create_app(settings),
        factory=workers > 1,
        workers=workers,
        host=settings.gateway_host,
        port=settings.gateway_port,
        loop="uvloop",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        **uvicorn_options(),  # httptools with the contract's 400, no server banner
    )


if __name__ == "__main__":
    main()
