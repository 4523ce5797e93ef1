"""python -m services.learning [serve | republish --since <ISO> [--until <ISO>]]

`serve` (the default): the learning gRPC server and its outbox relay.
`republish`: put the outbox events of a time range back on their streams after Redis lost
entries (services/learning/republish.py, docs/learning.md "Recovery after Redis data loss").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from libs.db import create_engine, session_factory
from libs.grpc_server import PortInUse
from libs.logging import configure_logging
from libs.redis_client import redis_client
from libs.settings import Settings
from services.learning.republish import BadRange, TimeRange, republish
from services.learning.server import build_server


async def serve(settings: Settings) -> None:
    # Built inside the running loop: grpc.aio objects bind to it.
    await build_server(settings).serve_until_signalled()


async def republish_range(settings: Settings, window: TimeRange) -> dict[str, int]:
    engine = create_engine(settings, "learning-republish")
    redis = redis_client(settings.redis_url)
    try:
        return await republish(
            session_factory(engine),
            redis,
            window,
            batch_size=settings.outbox_batch_size,
            stream_maxlen=settings.stream_maxlen,
        )
    finally:
        await redis.aclose()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.learning")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the gRPC server and the outbox relay (default)")
    again = commands.add_parser(
        "republish",
        help="publish the outbox events of a time range again (after Redis lost entries)",
    )
    again.add_argument("--since", required=True, help="ISO 8601 timestamp, inclusive")
    again.add_argument("--until", help="ISO 8601 timestamp, exclusive (default: now)")
    args = parser.parse_args()

    settings = Settings()
    configure_logging("learning", settings.log_level, settings.log_json)
    if args.command != "republish":
        try:
            asyncio.run(serve(settings))
        except PortInUse as error:
            sys.exit(f"learning: {error}")
        return
    try:
        window = TimeRange.parse(args.since, args.until, now=datetime.now(UTC))
    except BadRange as exc:
        again.error(str(exc))  # usage and the message on stderr, exit status 2
    try:
        counts = asyncio.run(republish_range(settings, window))
    except (RedisError, SQLAlchemyError, OSError) as exc:
        # Safe to run again: consumers drop the events already handled.
        sys.exit(f"republish failed (run it again once Redis and PostgreSQL answer): {exc!r}")
    streams = ", ".join(f"{stream}: {count}" for stream, count in sorted(counts.items()))
    print(
        f"republished {sum(counts.values())} event(s) created from {window.since.isoformat()} "
        f"until {window.until.isoformat()}" + (f" ({streams})" if streams else "")
    )


if __name__ == "__main__":
    main()
