"""python -m services.learning: the learning gRPC server and its outbox relay."""

from __future__ import annotations

import asyncio
import sys

from libs.grpc_server import PortInUse
from libs.logging import configure_logging
from libs.settings import Settings
from services.learning.server import build_server


async def serve(settings: Settings) -> None:
    # Built inside the running loop: grpc.aio objects bind to it.
    await build_server(settings).serve_until_signalled()


def main() -> None:
    settings = Settings()
    configure_logging("learning", settings.log_level, settings.log_json)
    try:
        asyncio.run(serve(settings))
    except PortInUse as error:
        sys.exit(f"learning: {error}")


if __name__ == "__main__":
    main()
