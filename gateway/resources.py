"""One definition per REST resource: its writable fields and its representation.

A resource is two models: `XWritable` (a `Writable`: the fields a client sets, with their
types and limits) and `XOut` (a `Representation` inheriting them: what the API answers).
Everything else is derived from that pair, so adding a field is one line in one of them:

- the read-only fields: those of the representation that no writable base declares
  (`read_only_fields`), flagged `readOnly` in OpenAPI (Swagger keeps them out of request
  examples);
- the request bodies (`request_body`): the writable fields (all optional for PATCH), plus every
  read-only field as an optional echo, since clients PUT what they GET;
- the masked update (`masked_update`): read-only echoes checked against the current
  representation, the writable fields sent, and the FieldMask naming them;
- the page of a list (`PageOut[XOut]`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Generic, TypeVar

from google.protobuf.field_mask_pb2 import FieldMask
from pydantic import BaseModel, ConfigDict, Field, create_model

from gateway.bodies import RequestModel, check_read_only

W = TypeVar("W", bound=BaseModel)
T = TypeVar("T")

READ_ONLY_HELP = "Read-only: accepted when equal to the current value, else 400."


class Writable(RequestModel):
    """Base of a resource's writable fields (a request body's core)."""


def _flag_read_only(schema: dict[str, Any], model: type[BaseModel]) -> None:
    for name in read_only_fields(model):
        schema.get("properties", {}).get(name, {})["readOnly"] = True


class Representation(BaseModel):
    """Base of a resource's response model. Unknown keys are refused, so validating a builder's
    output against it catches a key the model does not document."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_flag_read_only)


def writable_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `model` declared by its `Writable` bases, in declaration order."""
    declared: set[str] = set()
    for base in model.__mro__:
        if (
            isinstance(base, type)
            and issubclass(base, Writable)
            and not issubclass(base, Representation)
        ):
            declared.update(base.model_fields)
    return tuple(name for name in model.model_fields if name in declared)


def read_only_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a representation that no writable base declares."""
    writable = set(writable_fields(model))
    return tuple(name for name in model.model_fields if name not in writable)


def read_only_echo(description: str = READ_ONLY_HELP) -> Any:
    """A representation field a body may carry back (checked, or ignored on creation)."""
    return Field(default=None, description=description, json_schema_extra={"readOnly": True})


def request_body(
    representation: type[BaseModel],
    writable: type[W],
    *,
    partial: bool = False,
    read_only_help: str = READ_ONLY_HELP,
    name: str | None = None,
) -> type[W]:
    """A request body model: `writable`'s fields (each optional when `partial`; null is still
    not a value) and every other field of `representation` as a read-only echo.

    It subclasses `writable`, so routes annotate the body with the static writable class."""
    fields: dict[str, Any] = {}
    for field in read_only_fields(representation):
        if field not in writable.model_fields:
            fields[field] = (Any, read_only_echo(read_only_help))
    if partial:
        for field, info in writable.model_fields.items():
            annotation = (
                Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
            )
            fields[field] = (
                annotation,
                Field(default=None, description=info.description, examples=info.examples),
            )
    model_name = (
        name or f"{writable.__name__.removesuffix('Writable')}{'Patch' if partial else 'Body'}"
    )
    return create_model(model_name, __base__=writable, **fields)


class PageOut(BaseModel, Generic[T]):
    """The contract's page: {count, next, previous, results}."""

    count: int
    next: str | None
    previous: str | None
    results: list[T]


async def masked_update(
    body: BaseModel,
    representation: type[BaseModel],
    current: Callable[[], Awaitable[Mapping[str, Any]]],
) -> tuple[dict[str, Any], FieldMask]:
    """The writable fields a PUT or PATCH sent, and the FieldMask naming them, after checking
    its read-only echoes against the current representation (loaded only when it has some).

    The proto request names the writable fields as the REST API does, so the values go in as
    keyword arguments next to the mask."""
    await check_read_only(body, read_only_fields(representation), current)
    sent = body.model_dump(exclude_unset=True)
    changes = {name: sent[name] for name in writable_fields(representation) if name in sent}
    return changes, FieldMask(paths=list(changes))
