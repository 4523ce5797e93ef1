"""Operational endpoints: liveness, readiness, and the public signing keys."""

from __future__ import annotations

from typing import Any

import orjson
from courseplatform.identity.v1 import identity_pb2
from fastapi import APIRouter, Request, Response

from gateway.backends import Backends
from gateway.errors import error_body
from gateway.responses import OrjsonResponse

router = APIRouter(tags=["operations"])


def backends(request: Request) -> Backends:
    return request.app.state.backends


@router.get("/healthz/", summary="The gateway process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz/", summary="Every backend reports SERVING over gRPC health")
async def readyz(request: Request) -> Response:
    statuses = await backends(request).health()
    if all(status == "SERVING" for status in statuses.values()):
        return OrjsonResponse({"status": "ready", "backends": statuses})
    body: dict[str, Any] = error_body("A backend service is unavailable.")
    body["backends"] = statuses
    return OrjsonResponse(body, status_code=503)


@router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
async def jwks(request: Request) -> Response:
    reply = await backends(request).identity.GetJwks(identity_pb2.GetJwksRequest())
    return Response(
        orjson.dumps(orjson.loads(reply.jwks_json)),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )
