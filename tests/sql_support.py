"""Counting the SQL statements a piece of code sends, for the constant-statement-count tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class StatementCounter:
    def __init__(self) -> None:
        self.count = 0
        self.statements: list[str] = []

    def __call__(self, _connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.count += 1
        self.statements.append(statement)


@contextmanager
def counting_statements(engine: AsyncEngine) -> Iterator[StatementCounter]:
    """Counts every statement `engine` sends while the block runs."""
    counter = StatementCounter()
    event.listen(engine.sync_engine, "before_cursor_execute", counter)
    try:
        yield counter
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", counter)
