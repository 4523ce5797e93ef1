"""Bounds of the numbers the REST API accepts, matching the protobuf types behind them
(an id past int64 must be a 400 or 404, never an overflow inside the gateway)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import Field

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

Id = Annotated[int, Field(ge=1, le=INT64_MAX)]
PathId = Annotated[int, Path(ge=1, le=INT64_MAX)]
