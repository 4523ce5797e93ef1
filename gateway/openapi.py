"""The OpenAPI document as clients see the API: per route, the error statuses it can answer,
each with the contract's body.

What a route can answer follows from what it is made of, so it is derived, not listed by hand:
a bearer token dependency can answer 401, a role dependency 403, a request body 400, 413 and
415, query parameters 400, a path id or a page 404, a backend call 503 and 504. Statuses that
come from a service's business rules on routes that have none of those (a login's 401, a
publish's 400) are declared by the route in `responses`.

FastAPI documents a 422 `{detail: [...]}` for every route with parameters; the gateway never
sends it (validation problems are 400s with the contract body), so it is dropped here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field
from starlette.routing import compile_path

from gateway.auth import admin, authenticated, instructor, student
from gateway.pagination import page_params

ERROR_SCHEMA = "ErrorBody"
F = TypeVar("F", bound=Callable[..., Any])


class ErrorBody(BaseModel):
    error: bool = Field(True, description="Always true")
    message: str = Field(description="One human sentence; 'Validation error' for field problems")
    errors: dict[str, list[str]] = Field(
        description="Messages per field (`non_field_errors` for cross-field rules); may be empty"
    )


ERROR_DESCRIPTIONS = {
    400: "Bad input or a business rule",
    401: "No, invalid or expired token",
    403: "Authenticated but not allowed",
    404: "Not found, or not visible to this user",
    413: "Request body too large",
    415: "Unsupported media type",
    503: "A backend service is unavailable",
    504: "A backend service did not answer in time",
}
BODY_ERRORS = (400, 413, 415)
BACKEND_ERRORS = (503, 504)

_ANSWERS_LOCALLY: set[Callable[..., Any]] = set()


def answers_locally(endpoint: F) -> F:
    """Marks a route that calls no backend (or answers a backend failure its own way)."""
    _ANSWERS_LOCALLY.add(endpoint)
    return endpoint


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def route_errors(route: APIRoute, operation: dict[str, Any]) -> set[int]:
    """The error statuses `route` can answer (see the module docstring)."""
    calls = set(_calls(route.dependant))
    statuses = {int(status) for status in route.responses if int(status) >= 400}
    if authenticated in calls:
        statuses.add(401)
    if student in calls or instructor in calls or admin in calls:
        statuses.add(403)
    if "requestBody" in operation:
        statuses.update(BODY_ERRORS)
    places = {parameter["in"] for parameter in operation.get("parameters", [])}
    if "query" in places:
        statuses.add(400)
    if "path" in places or page_params in calls:
        statuses.add(404)
    if route.endpoint not in _ANSWERS_LOCALLY:
        statuses.update(BACKEND_ERRORS)
    return statuses


def install_contract_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas[ERROR_SCHEMA] = ErrorBody.model_json_schema()
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        error = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}
        # Included routers stay one node each in app.routes: walk the routes they hold.
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            path = schema["paths"][compile_path(context.path or route.path)[1]]
            for method in route.methods or ():
                operation = path[method.lower()]
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for status in sorted(route_errors(route, operation)):
                    answer = responses.setdefault(str(status), {})
                    if answer.get("description") in (None, "", "Additional Response"):
                        answer["description"] = ERROR_DESCRIPTIONS.get(status, "Error")
                    answer.setdefault("content", error)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
