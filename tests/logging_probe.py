"""`python -m tests.logging_probe`: a real gRPC server (libs/grpc_server.py) with the logging
policy of every service (libs/logging.py), whose one method fails with secrets all around it.

Prints its port on stdout, then serves until SIGTERM. The logs on stderr are what
tests/test_libs_logging.py reads.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import grpc
from google.protobuf.wrappers_pb2 import StringValue

from libs import call_context
from libs.grpc_server import GrpcServer, ServiceDefinition
from libs.logging import configure_logging, get_logger
from libs.settings import Settings
from libs.tokens import verifier_from_settings

SERVICE = "courseplatform.probe.v1.LoggingProbe"
log = get_logger("probe")


def nested_failure(depth: int, token: str) -> None:
    """Fails `depth` frames down, each frame holding the token in a local."""
    holder = {"authorization": f"Bearer {token}", "depth": depth}
    if depth == 0:
        raise RuntimeError(f"failed while holding Bearer {token} " + "y" * 50_000 + str(holder))
    nested_failure(depth - 1, token)


async def fail(request: StringValue, context: grpc.aio.ServicerContext) -> StringValue:
    token = call_context.access_token.get() or ""
    claims = call_context.current_claims()
    log.warning(
        "about to fail",
        authorization=f"Bearer {token}",
        password="hunter2-secret-password",
        reset_code="RESET-123456",
        headers={"Authorization": f"Bearer {token}", "x-request-id": "r1"},
        note=f"the caller's token is {token} (user {claims.user_id})",
        body="z" * 50_000,
    )
    logging.getLogger("third.party").error("a library logs Bearer %s", token)
    nested_failure(40, token)
    return StringValue()


async def main() -> None:
    settings = Settings()
    configure_logging("probe", "INFO", settings.log_json)  # JSON unless on a terminal
    handlers = {
        "Fail": grpc.unary_unary_rpc_method_handler(
            fail,
            request_deserializer=StringValue.FromString,
            response_serializer=StringValue.SerializeToString,
        )
    }

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    server = GrpcServer(
        ServiceDefinition(full_name=SERVICE, register=register),
        verifier_from_settings(settings),
        port=0,
        shutdown_grace_s=1,
    )
    port = await server.start()
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(15, stop.set)
    await stop.wait()
    await server.stop()
    sys.stderr.flush()


if __name__ == "__main__":
    asyncio.run(main())
