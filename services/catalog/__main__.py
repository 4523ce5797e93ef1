"""python -m services.catalog [serve | republish --since <ISO> [--until <ISO>]]

`serve` (the default): the catalog gRPC server and its outbox relay.
`republish`: put the CourseChanged events of a time range back on their stream after Redis lost
entries (libs/outbox_republish.py; docs/catalog.md "Change events").
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from libs import metrics, outbox_republish, tracing
from libs.grpc_server import PortInUse
from libs.logging import configure_logging
from libs.settings import Settings
from services.catalog import store
from services.catalog.server import build_server


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.catalog")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the gRPC server and the outbox relay (default)")
    outbox_republish.add_command(commands)
    args = parser.parse_args()

    settings = Settings()
    configure_logging("catalog", settings.log_level, settings.log_json)
    if args.command == "republish":
        outbox_republish.run_command(settings, store.outbox, "catalog-republish", args)
        return
    try:
        metrics.start(settings, "catalog", settings.grpc_bind_host)
        tracing.configure(settings, "catalog")
    except OSError as error:
        sys.exit(f"catalog: metrics port: {error}")
    try:
        asyncio.run(build_server(settings).serve_until_signalled())
    except PortInUse as error:
        sys.exit(f"catalog: {error}")


if __name__ == "__main__":
    main()
