"""Queries of the instructor views (a course's roster and statistics) and of withdrawal, on the
tables of store.py.

Figures are counted as GetEnrollment counts them, without reconciling anything (these are
reads of many students' rows): an open enrollment counts its completed rows among the course's
current lessons (the catalog's list, passed in as an array) out of that many; a completed one
counts its stored rows (completed enrollments are final). Each function runs a fixed number of
statements, whatever the page size, the number of enrollments or of lessons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import LateralFromClause

from libs.db import clock_now, row_columns, to_row
from libs.paging import PageRequest, past_the_end
from services.learning.domain import Enrollment, RosterEntry, RosterFilter, summary_of
from services.learning.store import ACTIVE, enrollments, lesson_progress

e = enrollments.c
lp = lesson_progress.c
_ENROLLMENT_COLUMNS = row_columns(enrollments, Enrollment)


@dataclass(frozen=True)
class _Figures:
    """Per-enrollment figures as SQL expressions over `enrollments` (needs the lateral join)."""

    total: sa.ColumnElement[int]
    done: sa.ColumnElement[int]
    percentage: sa.ColumnElement[Decimal]
    lateral: LateralFromClause


def _figures(current_lesson_ids: Sequence[int]) -> _Figures:
    """Each enrollment's lesson counts in one lateral aggregate over its progress rows."""
    ids = sa.cast(sa.literal(list(current_lesson_ids), ARRAY(sa.BigInteger)), ARRAY(sa.BigInteger))
    counts = (
        sa.select(
            sa.func.count()
            .filter(lp.completed, lp.lesson_id == sa.func.any(ids))
            .label("done_current"),
            sa.func.count().filter(lp.removed_at.is_(None)).label("total_stored"),
            sa.func.count().filter(lp.removed_at.is_(None), lp.completed).label("done_stored"),
        )
        .where(lp.enrollment_id == e.id)
        .lateral("counts")
    )
    is_open = e.completed_at.is_(None)
    total = sa.case((is_open, len(current_lesson_ids)), else_=counts.c.total_stored)
    done = sa.case((is_open, counts.c.done_current), else_=counts.c.done_stored)
    # numeric round() is half away from zero: the domain's half-up for these positive shares.
    percentage = sa.case(
        (total == 0, sa.literal(0, sa.Numeric)),
        else_=sa.func.round(sa.cast(done, sa.Numeric) * 100 / total, 2),
    )
    return _Figures(total=total, done=done, percentage=percentage, lateral=counts)


def _roster_conditions(course_id: int, chosen: RosterFilter) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = [e.course_id == course_id, ACTIVE]
    if chosen.is_completed is not None:
        conditions.append(
            e.completed_at.is_not(None) if chosen.is_completed else e.completed_at.is_(None)
        )
    if chosen.search:
        # ILIKE '%...%' with the user's % and _ escaped.
        conditions.append(e.student_name.icontains(chosen.search, autoescape=True))
    return conditions


async def roster_page(
    session: AsyncSession,
    course_id: int,
    current_lesson_ids: Sequence[int],
    chosen: RosterFilter,
    page: PageRequest,
) -> tuple[list[RosterEntry], int]:
    """One page of a course's active enrollments with their figures, and the match count: two
    statements (one past the end)."""
    conditions = _roster_conditions(course_id, chosen)
    total = int(
        await session.scalar(sa.select(sa.func.count()).select_from(enrollments).where(*conditions))
        or 0
    )
    if past_the_end(page.offset, total):
        return [], total
    figures = _figures(current_lesson_ids)
    key = {
        "enrolled_at": e.enrolled_at,
        "student_name": e.student_name,
        "completion_percentage": figures.percentage,
    }[chosen.ordering.key]
    direction = sa.desc if chosen.ordering.descending else sa.asc
    statement = (
        sa.select(
            *_ENROLLMENT_COLUMNS,
            figures.total.label("figure_total"),
            figures.done.label("figure_done"),
        )
        .select_from(enrollments.join(figures.lateral, sa.true()))
        .where(*conditions)
        .order_by(direction(key), direction(e.id))
        .limit(page.limit)
        .offset(page.offset)
    )
    entries = []
    for row in await session.execute(statement):
        record = cast(sa.Row[Any], row)  # the enrollment's columns, plus the two figures
        summary = summary_of(int(record.figure_done), int(record.figure_total))
        entries.append(RosterEntry(enrollment=to_row(Enrollment, record), summary=summary))
    return entries, total


@dataclass(frozen=True)
class CourseAggregates:
    enrollments: int
    completed: int
    percentage_sum: Decimal
    completed_by_lesson: dict[int, int]


async def course_aggregates(
    session: AsyncSession, course_id: int, current_lesson_ids: Sequence[int]
) -> CourseAggregates:
    """Counts over a course's active enrollments and, per current lesson, how many of them
    completed it (two statements)."""
    figures = _figures(current_lesson_ids)
    per_enrollment = (
        sa.select(e.completed_at, figures.percentage.label("percentage"))
        .select_from(enrollments.join(figures.lateral, sa.true()))
        .where(e.course_id == course_id, ACTIVE)
        .subquery("per_enrollment")
    )
    totals = (
        await session.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(per_enrollment.c.completed_at),
                sa.func.coalesce(sa.func.sum(per_enrollment.c.percentage), 0),
            )
        )
    ).one()
    by_lesson: dict[int, int] = {}
    if current_lesson_ids:
        ids = sa.cast(
            sa.literal(list(current_lesson_ids), ARRAY(sa.BigInteger)), ARRAY(sa.BigInteger)
        )
        funnel = (
            sa.select(lp.lesson_id, sa.func.count())
            .select_from(lesson_progress.join(enrollments, e.id == lp.enrollment_id))
            .where(
                e.course_id == course_id,
                ACTIVE,
                lp.completed,
                lp.lesson_id == sa.func.any(ids),
            )
            .group_by(lp.lesson_id)
        )
        by_lesson = {int(lesson_id): int(n) for lesson_id, n in await session.execute(funnel)}
    return CourseAggregates(
        enrollments=int(totals[0]),
        completed=int(totals[1]),
        percentage_sum=Decimal(totals[2]),
        completed_by_lesson=by_lesson,
    )


async def withdraw(session: AsyncSession, student_id: int, enrollment_id: int) -> bool:
    """Mark the student's active enrollment withdrawn (its row waits for any lesson being
    completed in it, and vice versa); False when there is none to withdraw."""
    statement = (
        sa.update(enrollments)
        .where(e.id == enrollment_id, e.student_id == student_id, ACTIVE)
        .values(withdrawn_at=clock_now(), updated_at=clock_now())
        .returning(e.id)
    )
    return (await session.scalar(statement)) is not None


async def enrollment_of_course(
    session: AsyncSession, student_id: int, course_id: int
) -> Enrollment | None:
    """The student's enrollment in the course, active or withdrawn."""
    statement = sa.select(*_ENROLLMENT_COLUMNS).where(
        e.student_id == student_id, e.course_id == course_id
    )
    row = (await session.execute(statement)).one_or_none()
    return to_row(Enrollment, row) if row else None
