"""python -m services.catalog"""

from __future__ import annotations

import asyncio
import sys

from libs.grpc_server import PortInUse
from libs.logging import configure_logging
from libs.settings import Settings
from services.catalog.server import build_server


def main() -> None:
    settings = Settings()
    configure_logging("catalog", settings.log_level, settings.log_json)
    try:
        asyncio.run(build_server(settings).serve_until_signalled())
    except PortInUse as error:
        sys.exit(f"catalog: {error}")


if __name__ == "__main__":
    main()
