"""Request bodies: JSON or form-encoded, validated against a pydantic model.

JSON is validated strictly (an id must be a JSON integer, a flag a JSON boolean); form bodies
carry only strings, so they are validated leniently ("5" -> 5), except booleans, which are
exactly "true" or "false". Unknown fields
are rejected by name. Routes declare `body: Annotated[Model, Body(Model)]` (for a resource,
`Annotated[XWritable, Body(XBody)]`, the body model derived in gateway/resources.py);
`openapi_body(Model)` documents the same model in the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import orjson
from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.errors import ApiError, validation_errors
from libs.errors import NON_FIELD

M = TypeVar("M", bound=BaseModel)

JSON_TYPE = "application/json"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
UNSUPPORTED_MEDIA_TYPE = (
    "Unsupported media type: send application/json, application/x-www-form-urlencoded "
    "or multipart/form-data."
)
NOT_A_BOOLEAN = "Must be true or false."
READ_ONLY = "This field is read-only and cannot be changed."
NULL_CHARACTER = "Null characters are not allowed."
TOO_DEEP = "The request body is nested too deeply."
# No request body nests deeper than 3 (bulk_create: object > lessons list > lesson). orjson
# accepts up to 1024 levels, past what the recursive checks below can walk on Python's stack.
MAX_DEPTH = 32


class RequestModel(BaseModel):
    """Base of every request body: a field no route knows is an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


async def read_body(request: Request) -> tuple[dict[str, Any], bool]:
    """The body as a dict, and whether it came from a form.

    JSON needs its media type: a browser may send a cross-site `text/plain` (or untyped) POST
    without asking, so a JSON body under any other type is 415, never parsed. Forms are
    accepted as the contract says. No body and no type is an empty object."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in FORM_TYPES:
        form = await request.form()
        return {key: form.getlist(key)[-1] for key in form}, True
    raw = await request.body()
    if content_type != JSON_TYPE and (content_type or raw):
        raise ApiError(415, UNSUPPORTED_MEDIA_TYPE)
    if not raw.strip():
        return {}, False
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(
            400, "Malformed JSON in request body.", {NON_FIELD: ["Malformed JSON."]}
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "Validation error", {NON_FIELD: ["Expected a JSON object."]})
    return data, False


def validate_body(model: type[M], data: Mapping[str, Any], from_form: bool) -> M:
    if nesting_depth(data) > MAX_DEPTH:
        raise ApiError(400, "Validation error", {NON_FIELD: [TOO_DEEP]})
    errors = null_character_errors(data)
    if from_form:
        data = form_booleans(model, data, errors)
    try:
        body = model.model_validate(data, strict=not from_form)
    except ValidationError as exc:
        for name, messages in validation_errors(exc.errors()).items():
            errors.setdefault(name, []).extend(messages)
    if errors:
        raise ApiError(400, "Validation error", errors)
    return body


def form_booleans(
    model: type[BaseModel], data: Mapping[str, Any], errors: dict[str, list[str]]
) -> dict[str, Any]:
    """Form values are text; a boolean field takes exactly `true` or `false` (pydantic's lax
    mode would also take yes/on/1/...). Bad values are added to `errors`."""
    converted = dict(data)
    for name, field in model.model_fields.items():
        value = data.get(name)
        if not isinstance(value, str) or field.annotation not in (bool, bool | None):
            continue
        if value in _FORM_BOOLEANS:
            converted[name] = _FORM_BOOLEANS[value]
        else:
            errors.setdefault(name, []).append(NOT_A_BOOLEAN)
            converted[name] = False  # placeholder: the body is refused, with this one message
    return converted


_FORM_BOOLEANS = {"true": True, "false": False}


def nesting_depth(value: Any) -> int:
    """How many objects and lists deep `value` goes (counting stops past MAX_DEPTH), walked
    without recursion: a JSON body may nest 1,000 levels, and recursing that far is a 500."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, Mapping):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_DEPTH:
            break
        pending.extend((child, depth + 1) for child in children)
    return deepest


def null_character_errors(value: Any, path: str = "") -> dict[str, list[str]]:
    """Strings holding U+0000, by field path. PostgreSQL text cannot store that character, so
    it is refused here, for every route at once, instead of failing deep in a service."""
    if isinstance(value, str):
        return {path or NON_FIELD: [NULL_CHARACTER]} if "\x00" in value else {}
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {}
    errors: dict[str, list[str]] = {}
    for key, item in items:
        errors.update(null_character_errors(item, f"{path}.{key}" if path else str(key)))
    return errors


def Body(model: type[M]) -> Any:
    async def dependency(request: Request) -> M:
        data, from_form = await read_body(request)
        return validate_body(model, data, from_form)

    dependency.__name__ = f"body_{model.__name__}"
    return Depends(dependency)


def openapi_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """`openapi_extra` that documents `model` as the JSON and form request body."""
    schema = model.model_json_schema()
    schema = _inline_definitions(schema, schema.pop("$defs", {}))
    content = {media: {"schema": schema} for media in ("application/json", *FORM_TYPES[:1])}
    return {"requestBody": {"required": required, "content": content}}


def _inline_definitions(schema: Any, definitions: Mapping[str, Any]) -> Any:
    """`schema` with each `#/$defs/X` reference replaced by X itself: nested models (a bulk
    request's items) are not in the document's components, so a reference to them would
    dangle. Request models are not recursive, so inlining ends."""
    if isinstance(schema, list):
        return [_inline_definitions(item, definitions) for item in schema]
    if not isinstance(schema, dict):
        return schema
    reference = schema.get("$ref", "")
    if reference.startswith("#/$defs/"):
        return _inline_definitions(definitions[reference.removeprefix("#/$defs/")], definitions)
    return {key: _inline_definitions(value, definitions) for key, value in schema.items()}


async def check_read_only(
    body: BaseModel,
    fields: Iterable[str],
    current: Callable[[], Awaitable[Mapping[str, Any]]],
) -> None:
    """Clients PUT what they GET: a read-only field is fine when unchanged, a 400 when changed.

    `current` loads the resource's representation; it is called only when the body carries a
    read-only field, so a plain update costs no extra backend read.
    """
    sent = body.model_dump(exclude_unset=True)
    fields = [name for name in fields if name in sent]
    if not fields:
        return
    representation = await current()
    errors: dict[str, list[str]] = {}
    for name in fields:
        if not _same(sent[name], representation.get(name)):
            errors[name] = [READ_ONLY]
    if errors:
        raise ApiError(400, "Validation error", errors)


def _same(sent: Any, current: Any) -> bool:
    # Form bodies carry strings; compare their text with the representation's value.
    return sent == current or (isinstance(sent, str) and sent == _as_text(current))


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
