"""python -m services.learning [serve | republish --since <ISO> [--until <ISO>]]

`serve` (the default): the learning gRPC server and its outbox relay.
`republish`: put the outbox events of a time range back on their streams after Redis lost
entries (libs/outbox_republish.py, docs/learning.md "Recovery after Redis data loss").
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from libs import metrics, outbox_republish, tracing
from libs.grpc_server import PortInUse
from libs.logging import configure_logging
from libs.settings import Settings
from services.learning import store
from services.learning.server import build_server


async def serve(settings: Settings) -> None:
    # Built inside the running loop: grpc.aio objects bind to it.
    await build_server(settings).serve_until_signalled()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.learning")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the gRPC server and the outbox relay (default)")
    outbox_republish.add_command(commands)
    args = parser.parse_args()

    settings = Settings()
    configure_logging("learning", settings.log_level, settings.log_json)
    if args.command == "republish":
        outbox_republish.run_command(settings, store.outbox, "learning-republish", args)
        return
    try:
        metrics.start(settings, "learning", settings.grpc_bind_host)
        tracing.configure(settings, "learning")
    except OSError as error:
        sys.exit(f"learning: metrics port: {error}")
    try:
        asyncio.run(serve(settings))
    except PortInUse as error:
        sys.exit(f"learning: {error}")


if __name__ == "__main__":
    main()
