"""Paging of list RPCs, the same in every service: a 1-based `page` and a `page_size` of 1..100,
where 0 means the default (proto3 cannot say "unset"). The gateway applies the same bounds."""

from __future__ import annotations

from dataclasses import dataclass

from libs.errors import FieldErrorCollector

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class PageRequest:
    offset: int
    limit: int

    @property
    def page_size(self) -> int:
        return self.limit


def page_request(page: int, page_size: int) -> PageRequest:
    """Validated paging; every out-of-range field is reported at once (InvalidArgument)."""
    errors = FieldErrorCollector()
    if page < 0:
        errors.add("page", "Ensure this value is greater than or equal to 1.")
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        errors.add("page_size", f"Ensure this value is between 1 and {MAX_PAGE_SIZE}.")
    errors.raise_if_any()
    size = page_size or DEFAULT_PAGE_SIZE
    return PageRequest(offset=(max(page, 1) - 1) * size, limit=size)


def past_the_end(offset: int, total: int) -> bool:
    """Whether a page starting at `offset` holds nothing: its query is then skipped, so a page
    far past the end costs the count alone, not an OFFSET scan over every matching row."""
    return offset >= total
