"""The contract's page shape: {count, next, previous, results}, 20 per page, ?page and ?page_size."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import BeforeValidator

from gateway.errors import ApiError
from gateway.fields import INT32_MAX
from libs.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

# The protos carry a page as int32. A page beyond that is beyond the end of any list (it would
# skip over 2 billion rows), so it is asked for as INT32_MAX and answered 404 like any page
# past the end, whatever its number of digits.
MAX_PAGE = INT32_MAX
_DIGITS = re.compile(r"[0-9]+")


def _capped_page(value: object) -> object:
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        digits = value.lstrip("0") or "0"
        return min(int(digits), MAX_PAGE) if len(digits) <= len(str(MAX_PAGE)) else MAX_PAGE
    return value


@dataclass(frozen=True)
class PageParams:
    page: int
    page_size: int


def page_params(
    page: Annotated[int, BeforeValidator(_capped_page), Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> PageParams:
    return PageParams(page=page, page_size=page_size)


Page = Annotated[PageParams, Depends(page_params)]


def paginated(
    request: Request, params: PageParams, results: Sequence[Any], count: int
) -> dict[str, Any]:
    """The page body; a page past the end is a 404 (page 1 of nothing is an empty page)."""
    next_url, previous_url = page_links(request, params, count)
    return {"count": count, "next": next_url, "previous": previous_url, "results": list(results)}


def page_links(request: Request, params: PageParams, count: int) -> tuple[str | None, str | None]:
    """The page's `next` and `previous` URLs; a page past the end is a 404."""
    last_page = max(1, -(-count // params.page_size))
    if params.page > last_page:
        raise ApiError(404, "Invalid page.")
    url = request.url
    next_url = (
        str(url.include_query_params(page=params.page + 1)) if params.page < last_page else None
    )
    previous_url = str(url.include_query_params(page=params.page - 1)) if params.page > 1 else None
    return next_url, previous_url
