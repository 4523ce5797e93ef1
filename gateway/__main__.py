"""python -m gateway: serve the REST API with uvicorn (uvloop + httptools)."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from libs.logging import configure_logging
from libs.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
