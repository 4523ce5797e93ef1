"""The OpenAPI document as clients see the API: every error documented with the contract's body.

FastAPI documents a 422 `{detail: [...]}` for every route with parameters; the gateway never sends
it (validation problems are 400s with the contract body), so it is replaced here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

ERROR_SCHEMA = "ErrorBody"


class ErrorBody(BaseModel):
    error: bool = Field(True, description="Always true")
    message: str = Field(description="One human sentence; 'Validation error' for field problems")
    errors: dict[str, list[str]] = Field(
        description="Messages per field (`non_field_errors` for cross-field rules); may be empty"
    )


ERROR_RESPONSES = {
    "400": "Bad input or a business rule",
    "401": "No, invalid or expired token",
    "403": "Authenticated but not allowed",
    "404": "Not found, or not visible to this user",
}


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
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for status, description in ERROR_RESPONSES.items():
                    responses.setdefault(status, {"description": description, "content": error})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
