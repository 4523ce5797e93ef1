"""python -m services.notifier [run | replay-dead-letters [ID ...]]

`run` (the default) consumes the course-completed stream until SIGTERM/SIGINT, serving
GET /health (readiness: Redis, PostgreSQL, subscribers), GET /livez and the AsyncAPI document at
/docs/asyncapi(.json) on NOTIFIER_HEALTH_HOST:NOTIFIER_HEALTH_PORT. On SIGTERM it stops reading,
lets the mail in flight finish (up to NOTIFIER_SHUTDOWN_GRACE_S) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvicorn
from redis.asyncio import Redis

from libs.logging import configure_logging, get_logger
from libs.settings import Settings
from libs.streams import COURSE_COMPLETED_DLQ, COURSE_COMPLETED_STREAM
from services.notifier.app import NotifierApp
from services.notifier.deadletter import replay

log = get_logger("notifier")
WATCH_INTERVAL_S = 5.0


async def serve(settings: Settings) -> int:
    notifier = NotifierApp(settings)
    config = uvicorn.Config(
        notifier.app,
        host=settings.notifier_health_host,
        port=settings.notifier_health_port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    exit_code = 0
    # FastStream stops a subscriber for good on a terminal error (e.g. the group was deleted);
    # exiting lets the supervisor restart the process, which recreates the group.
    while not serving.done():
        await asyncio.wait({serving}, timeout=WATCH_INTERVAL_S)
        if server.started and not server.should_exit and not notifier.subscribers_running:
            log.error("a stream subscriber stopped; exiting so the process is restarted")
            server.should_exit = True
            exit_code = 1
    await serving
    if not server.started:
        return 1  # start-up failed (database or Redis unreachable); uvicorn logged why
    return exit_code


async def replay_dead_letters(settings: Settings, ids: list[str]) -> None:
    redis = Redis.from_url(settings.redis_url)
    try:
        replayed = await replay(
            redis,
            dead_letter_stream=COURSE_COMPLETED_DLQ,
            target_stream=COURSE_COMPLETED_STREAM,
            ids=ids or None,
            maxlen=settings.stream_maxlen,
        )
    finally:
        await redis.aclose()
    print(f"replayed {len(replayed)} dead letter(s) onto {COURSE_COMPLETED_STREAM}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.notifier")
    parser.add_argument("command", nargs="?", default="run", choices=["run", "replay-dead-letters"])
    parser.add_argument("ids", nargs="*", help="dead-letter entry ids (default: all)")
    args = parser.parse_args()
    settings = Settings()
    configure_logging("notifier", settings.log_level, settings.log_json)
    if args.command == "replay-dead-letters":
        asyncio.run(replay_dead_letters(settings, args.ids))
        return
    sys.exit(asyncio.run(serve(settings)))


if __name__ == "__main__":
    main()
