"""Operational endpoints: liveness, readiness, and the public signing keys."""

from __future__ import annotations

from typing import Any

import orjson
from courseplatform.identity.v1 import identity_pb2
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.backends import Backends
from gateway.errors import error_body
from gateway.openapi import ErrorBody, answers_locally
from gateway.responses import OrjsonResponse

router = APIRouter(tags=["operations"])

BACKENDS_EXAMPLE = {"identity": "SERVING", "catalog": "SERVING", "learning": "SERVING"}


class Healthy(BaseModel):
    status: str = Field(examples=["ok"])


class Ready(BaseModel):
    status: str = Field(examples=["ready"])
    backends: dict[str, str] = Field(
        description="Each backend's gRPC health: SERVING, NOT_SERVING or UNAVAILABLE",
        examples=[BACKENDS_EXAMPLE],
    )


class Jwk(BaseModel):
    model_config = ConfigDict(extra="allow")

    kty: str = Field(examples=["OKP"])
    crv: str = Field(examples=["Ed25519"])
    x: str = Field(examples=["_YNyq1HVtEEjpbrOBz4wJh-tR3A_C1J0q0hCggO0NaU"])
    kid: str = Field(examples=["0000-dev-only-insecure"])
    alg: str = Field(examples=["EdDSA"])
    use: str = Field(examples=["sig"])


class Jwks(BaseModel):
    keys: list[Jwk]


class NotReady(ErrorBody):
    """The contract's error body, with each backend's status."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **error_body("A backend service is unavailable."),
                    "backends": {**BACKENDS_EXAMPLE, "learning": "UNAVAILABLE"},
                }
            ]
        }
    )

    backends: dict[str, str]


def backends(request: Request) -> Backends:
    return request.app.state.backends


@router.get("/healthz/", summary="The gateway process is up", responses={200: {"model": Healthy}})
@answers_locally
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz/",
    summary="Every backend reports SERVING over gRPC health",
    responses={
        200: {"model": Ready},
        503: {"model": NotReady, "description": "Some backend is not SERVING"},
    },
)
@answers_locally  # backend failures are its 503, documented above
async def readyz(request: Request) -> Response:
    statuses = await backends(request).health()
    if all(status == "SERVING" for status in statuses.values()):
        return OrjsonResponse({"status": "ready", "backends": statuses})
    body: dict[str, Any] = error_body("A backend service is unavailable.")
    body["backends"] = statuses
    return OrjsonResponse(body, status_code=503)


@router.get(
    "/.well-known/jwks.json",
    summary="Public keys that verify access tokens",
    responses={200: {"model": Jwks}},
)
async def jwks(request: Request) -> Response:
    reply = await backends(request).identity.GetJwks(identity_pb2.GetJwksRequest())
    return Response(
        orjson.dumps(orjson.loads(reply.jwks_json)),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )
