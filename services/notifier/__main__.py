"""python -m services.notifier [run | replay-dead-letters [ID ...]]

`run` (the default) consumes the course-completed stream until SIGTERM/SIGINT, serving
GET /health (readiness: Redis, PostgreSQL, subscribers), GET /livez and the AsyncAPI document at
/docs/asyncapi(.json) on NOTIFIER_HEALTH_HOST:NOTIFIER_HEALTH_PORT. On SIGTERM it stops reading,
lets the mail in flight finish (up to NOTIFIER_SHUTDOWN_GRACE_S) and exits.
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn

from libs import tracing
from libs.logging import configure_logging, flush_logs_on_sigterm
from libs.redis_client import redis_client
from libs.settings import Settings
from libs.streams import COURSE_COMPLETED_DLQ, COURSE_COMPLETED_STREAM
from services.notifier.app import NotifierApp
from services.notifier.deadletter import replay


def serve(settings: Settings) -> None:
    # uvicorn runs the ASGI app (health, AsyncAPI) and its lifespan starts and stops the broker;
    # on SIGTERM/SIGINT it drains HTTP, then FastStream lets the handler in flight finish.
    tracing.configure(settings, "notifier")
    uvicorn.run(
        NotifierApp(settings).app,
        host=settings.notifier_health_host,
        port=settings.notifier_health_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


async def replay_dead_letters(settings: Settings, ids: list[str]) -> None:
    redis = redis_client(settings.redis_url)
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
    flush_logs_on_sigterm()
    if args.command == "replay-dead-letters":
        asyncio.run(replay_dead_letters(settings, args.ids))
        return
    serve(settings)


if __name__ == "__main__":
    main()
