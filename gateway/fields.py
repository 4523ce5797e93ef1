"""Bounds of the numbers the REST API accepts, matching the protobuf types behind them
(an id past int64 must be a 400 or 404, never an overflow inside the gateway).

Ids in paths are matched by the router itself (`{course_id:id}`): a path whose id is not a
number from 1 to INT64_MAX names no resource, so it is a 404 (or a 405 for a fixed path such
as /api/lessons/bulk_create/) decided before any dependency runs or the body is read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import Field
from starlette.convertors import Convertor, register_url_convertor

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

Id = Annotated[int, Field(ge=1, le=INT64_MAX)]
PathId = Annotated[int, Path(ge=1, le=INT64_MAX)]


def decimal_at_most(limit: int) -> str:
    """A regex for the decimal numbers 1..limit without leading zeros."""
    digits = str(limit)
    width = len(digits)
    shorter = [f"[1-9][0-9]{{0,{width - 2}}}"] if width > 1 else []
    same_width = []
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            rest = f"[0-9]{{{width - i - 1}}}" if i < width - 1 else ""
            same_width.append(f"{digits[:i]}[{low}-{int(digit) - 1}]{rest}")
    return "|".join([*shorter, *same_width, digits])


class IdConvertor(Convertor[int]):
    regex = f"(?:{decimal_at_most(INT64_MAX)})"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())
