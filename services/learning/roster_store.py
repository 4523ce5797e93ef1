"""Queries of the instructor views (a course's roster and statistics) and of withdrawal, on the
tables of store.py.

Figures are counted as GetEnrollment counts them, without reconciling anything (these are
reads of many students' rows): an open enrollment counts its completed rows among the course's
current lessons (the catalog's list, passed in as an array) out of that many; a completed one
counts its stored rows (completed enrollments are final). The statistics read running counts
kept by `apply_counts`. Each function runs a fixed number of statements, whatever the page size,
the number of enrollments or of lessons.
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
from services.learning import SCHEMA
from services.learning.domain import Enrollment, RosterEntry, RosterFilter, summary_of
from services.learning.store import (
    ACTIVE,
    course_counts,
    course_lesson_counts,
    enrollments,
    lesson_progress,
)

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
    if chosen.is_completed is None and not chosen.search:
        # Every active enrollment: the running count, not a count over thousands of rows.
        counted = sa.select(course_counts.c.enrollments).where(
            course_counts.c.course_id == course_id
        )
    else:
        counted = sa.select(sa.func.count()).select_from(enrollments).where(*conditions)
    total = int(await session.scalar(counted) or 0)
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
    # Over the course's current lessons: completions by active enrollments, and by those of
    # them that are open (the completed ones are at 100% whatever the lessons now).
    completed_by_lesson: dict[int, int]
    open_completions: int


async def course_aggregates(
    session: AsyncSession, course_id: int, current_lesson_ids: Sequence[int]
) -> CourseAggregates:
    """The course's running counts (two statements, a row per current lesson at most)."""
    totals = (
        await session.execute(
            sa.select(course_counts.c.enrollments, course_counts.c.completed).where(
                course_counts.c.course_id == course_id
            )
        )
    ).one_or_none()
    by_lesson: dict[int, int] = {}
    open_completions = 0
    if current_lesson_ids:
        counts = course_lesson_counts.c
        rows = await session.execute(
            sa.select(counts.lesson_id, counts.completed, counts.completed_in_completed).where(
                counts.course_id == course_id, counts.lesson_id.in_(list(current_lesson_ids))
            )
        )
        for lesson_id, completed, in_completed in rows:
            by_lesson[int(lesson_id)] = int(completed)
            open_completions += int(completed) - int(in_completed)
    return CourseAggregates(
        enrollments=int(totals.enrollments) if totals else 0,
        completed=int(totals.completed) if totals else 0,
        completed_by_lesson=by_lesson,
        open_completions=open_completions,
    )


# Running counts --------------------------------------------------------------------------------
#
# Every change of what the statistics count goes through `apply_counts`, in the transaction that
# makes the change and after it (with the enrollments concerned locked). Per enrollment it is a
# pair of deltas (active, completed): enrolled or back (+1, +1 if completed), withdrawn (-1, -1 if
# completed), completed now (0, +1); the lesson counts of each of its completed lessons move by the
# same pair, and a lesson completed now adds (1, 0). One statement per table, each upserting its
# rows in key order: all transactions take these row locks in one global order (lesson counts by
# course and lesson, then course counts by course), so they wait for each other, never deadlock.

_LESSON_DELTAS = sa.text(
    f"""
INSERT INTO {SCHEMA}.course_lesson_counts AS counts
    (course_id, lesson_id, completed, completed_in_completed)
SELECT course_id, lesson_id, sum(d_active), sum(d_completed)
FROM (
    SELECT d.course_id, p.lesson_id, d.d_active, d.d_completed
    FROM unnest(CAST(:enrollment_ids AS bigint[]), CAST(:course_ids AS bigint[]),
                CAST(:d_active AS integer[]), CAST(:d_completed AS integer[]))
         AS d(enrollment_id, course_id, d_active, d_completed)
    JOIN {SCHEMA}.lesson_progress AS p ON p.enrollment_id = d.enrollment_id AND p.completed
    UNION ALL
    SELECT l.course_id, l.lesson_id, 1, 0
    FROM unnest(CAST(:lesson_course_ids AS bigint[]), CAST(:lesson_ids AS bigint[]))
         AS l(course_id, lesson_id)
) AS deltas
GROUP BY course_id, lesson_id
ORDER BY course_id, lesson_id
ON CONFLICT (course_id, lesson_id) DO UPDATE
SET completed = counts.completed + excluded.completed,
    completed_in_completed = counts.completed_in_completed + excluded.completed_in_completed
"""
)

_COURSE_DELTAS = sa.text(
    f"""
INSERT INTO {SCHEMA}.course_counts AS counts (course_id, enrollments, completed)
SELECT course_id, sum(d_active), sum(d_completed)
FROM unnest(CAST(:course_ids AS bigint[]), CAST(:d_active AS integer[]),
            CAST(:d_completed AS integer[])) AS d(course_id, d_active, d_completed)
GROUP BY course_id
ORDER BY course_id
ON CONFLICT (course_id) DO UPDATE
SET enrollments = counts.enrollments + excluded.enrollments,
    completed = counts.completed + excluded.completed
"""
)


async def apply_counts(
    session: AsyncSession,
    *,
    enrolled: Sequence[Enrollment] = (),
    added: Sequence[Enrollment] = (),
    withdrawn: Sequence[Enrollment] = (),
    completed: Sequence[Enrollment] = (),
    lesson_completed: Sequence[tuple[int, int]] = (),
) -> None:
    """Move the running counts by what this transaction did: enrollments `enrolled` (new: no
    lesson done yet), `added` (back, as they are now), `withdrawn` (as they were), `completed` by
    it, and (course id, lesson id) of each lesson it completed. At most two statements."""
    course_only = [(e, 1, 0) for e in enrolled]
    deltas = [
        *((e, 1, int(e.completed_at is not None)) for e in added),
        *((e, -1, -int(e.completed_at is not None)) for e in withdrawn),
        *((e, 0, 1) for e in completed),
    ]
    if deltas or lesson_completed:
        await session.execute(
            _LESSON_DELTAS,
            {
                "enrollment_ids": [e.id for e, _, _ in deltas],
                "course_ids": [e.course_id for e, _, _ in deltas],
                "d_active": [active for _, active, _ in deltas],
                "d_completed": [done for _, _, done in deltas],
                "lesson_course_ids": [course for course, _ in lesson_completed],
                "lesson_ids": [lesson for _, lesson in lesson_completed],
            },
        )
    by_course = [*deltas, *course_only]
    if by_course:
        await session.execute(
            _COURSE_DELTAS,
            {
                "course_ids": [e.course_id for e, _, _ in by_course],
                "d_active": [active for _, active, _ in by_course],
                "d_completed": [done for _, _, done in by_course],
            },
        )


async def withdraw(session: AsyncSession, student_id: int, enrollment_id: int) -> Enrollment | None:
    """Mark the student's active enrollment withdrawn (its row waits for any lesson being
    completed in it, and vice versa); None when there is none to withdraw."""
    statement = (
        sa.update(enrollments)
        .where(e.id == enrollment_id, e.student_id == student_id, ACTIVE)
        .values(withdrawn_at=clock_now(), updated_at=clock_now())
        .returning(*_ENROLLMENT_COLUMNS)
    )
    row = (await session.execute(statement)).one_or_none()
    return to_row(Enrollment, row) if row else None


async def enrollment_of_course(
    session: AsyncSession, student_id: int, course_id: int
) -> Enrollment | None:
    """The student's enrollment in the course, active or withdrawn."""
    statement = sa.select(*_ENROLLMENT_COLUMNS).where(
        e.student_id == student_id, e.course_id == course_id
    )
    row = (await session.execute(statement)).one_or_none()
    return to_row(Enrollment, row) if row else None
