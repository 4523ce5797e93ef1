"""Tables of schema `learning` and the queries the service runs on them.

Every function runs a fixed number of statements whatever the number of lessons: lesson lists
travel as arrays and are expanded by `unnest` inside PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.db import clock_now, row_columns, schema_metadata, to_row
from libs.outbox import Outbox
from libs.paging import PageRequest, past_the_end
from services.learning import SCHEMA
from services.learning.domain import (
    CatalogCourse,
    CatalogLesson,
    Enrollment,
    LessonCopy,
    LessonState,
    Progress,
)

metadata = schema_metadata(SCHEMA)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


enrollments = sa.Table(
    "enrollments",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    # Ids of identity users and catalog courses: no foreign keys across schemas.
    sa.Column("student_id", sa.BigInteger, nullable=False),
    sa.Column("student_name", sa.String(255), nullable=False),
    sa.Column("course_id", sa.BigInteger, nullable=False, index=True),
    # The course title as last seen in the catalog (refreshed on every reconciliation).
    sa.Column("course_title", sa.String(255), nullable=False),
    sa.Column(
        "enrolled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    *_timestamps(),
    # Set while the student is withdrawn: a state, not a delete (enrolling again revives the row).
    sa.Column("withdrawn_at", sa.DateTime(timezone=True)),
    # One enrollment per student and course, decided by the database so races cannot double it.
    sa.UniqueConstraint("student_id", "course_id"),
)
# Every read of a student's enrollments, progress and courses sees active enrollments only.
ACTIVE = enrollments.c.withdrawn_at.is_(None)
# A course's roster: its active enrollments by enrolled_at (the default) and by student name.
sa.Index(
    "ix_enrollments_course_active_enrolled",
    enrollments.c.course_id,
    enrollments.c.enrolled_at,
    enrollments.c.id,
    postgresql_where=ACTIVE,
)
sa.Index(
    "ix_enrollments_course_active_name",
    enrollments.c.course_id,
    enrollments.c.student_name,
    enrollments.c.id,
    postgresql_where=ACTIVE,
)

lesson_progress = sa.Table(
    "lesson_progress",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "enrollment_id",
        sa.BigInteger,
        sa.ForeignKey(enrollments.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("lesson_id", sa.BigInteger, nullable=False),
    sa.Column("lesson_title", sa.String(255), nullable=False),
    sa.Column("lesson_order", sa.Integer, nullable=False),
    sa.Column("completed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    # Set when the lesson left the course: the row stops counting but its history stays.
    sa.Column("removed_at", sa.DateTime(timezone=True)),
    *_timestamps(),
    sa.UniqueConstraint("enrollment_id", "lesson_id"),
    sa.CheckConstraint("completed = (completed_at IS NOT NULL)", name="completed_at"),
)

# Running counts behind a course's statistics (roster_store.py keeps them, in the transactions
# that change what they count), so the statistics read a handful of rows, not every enrollment.
course_counts = sa.Table(
    "course_counts",
    metadata,
    sa.Column("course_id", sa.BigInteger, primary_key=True),
    # Active (not withdrawn) enrollments, and how many of them are completed.
    sa.Column("enrollments", sa.Integer, nullable=False, server_default="0"),
    sa.Column("completed", sa.Integer, nullable=False, server_default="0"),
)
course_lesson_counts = sa.Table(
    "course_lesson_counts",
    metadata,
    sa.Column("course_id", sa.BigInteger, primary_key=True),
    sa.Column("lesson_id", sa.BigInteger, primary_key=True),
    # Active enrollments with this lesson completed, and how many of those are completed.
    sa.Column("completed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("completed_in_completed", sa.Integer, nullable=False, server_default="0"),
)

# The shared outbox (libs/outbox.py): table `learning.outbox`, channel `learning_outbox`.
outbox = Outbox(metadata)


_ENROLLMENT_COLUMNS = row_columns(enrollments, Enrollment)
_PROGRESS_COLUMNS = row_columns(lesson_progress, Progress)
_LESSON_STATE_COLUMNS = row_columns(
    lesson_progress,
    LessonState,
    renamed={"progress_id": "id", "title": "lesson_title", "order": "lesson_order"},
)


def _enrollment(row: sa.Row) -> Enrollment:
    return Enrollment(**row._mapping)


def _progress(row: sa.Row) -> Progress:
    return Progress(**row._mapping)


def _bigints(values: Sequence[int]) -> sa.ColumnElement:
    return sa.cast(sa.literal(list(values), ARRAY(sa.BigInteger)), ARRAY(sa.BigInteger))


# Enrollments -------------------------------------------------------------------------------


async def insert_enrollment(
    session: AsyncSession, *, student_id: int, student_name: str, course_id: int, course_title: str
) -> Enrollment | None:
    """The new enrollment, or the student's withdrawn one made active again (same id, progress
    and completed_at), or None when the student is already enrolled. The unique constraint and
    the row lock of ON CONFLICT decide, so concurrent requests wait for each other and exactly
    one wins."""
    new_row = insert(enrollments).values(
        student_id=student_id,
        student_name=student_name,
        course_id=course_id,
        course_title=course_title,
    )
    statement = new_row.on_conflict_do_update(
        index_elements=[enrollments.c.student_id, enrollments.c.course_id],
        set_={"withdrawn_at": None, "updated_at": clock_now()},
        where=enrollments.c.withdrawn_at.is_not(None),
    ).returning(*_ENROLLMENT_COLUMNS)
    row = (await session.execute(statement)).one_or_none()
    return _enrollment(row) if row else None


async def enrollment_of(
    session: AsyncSession, student_id: int, enrollment_id: int
) -> Enrollment | None:
    statement = sa.select(*_ENROLLMENT_COLUMNS).where(
        enrollments.c.id == enrollment_id, enrollments.c.student_id == student_id, ACTIVE
    )
    row = (await session.execute(statement)).one_or_none()
    return _enrollment(row) if row else None


async def open_enrollments_of(session: AsyncSession, student_id: int) -> list[Enrollment]:
    statement = (
        sa.select(*_ENROLLMENT_COLUMNS)
        .where(enrollments.c.student_id == student_id, enrollments.c.completed_at.is_(None), ACTIVE)
        .order_by(enrollments.c.id)
    )
    return [_enrollment(row) for row in await session.execute(statement)]


async def lock_enrollments(
    session: AsyncSession, enrollment_ids: Sequence[int]
) -> list[Enrollment]:
    """Lock the enrollments (in id order, so two lockers never deadlock) for the transaction:
    every progress write and completion of one enrollment happens one at a time."""
    if not enrollment_ids:
        return []
    statement = (
        sa.select(*_ENROLLMENT_COLUMNS)
        .where(enrollments.c.id.in_(list(enrollment_ids)))
        .order_by(enrollments.c.id)
        .with_for_update()
    )
    return [_enrollment(row) for row in await session.execute(statement)]


async def list_enrollments(
    session: AsyncSession, student_id: int, page: PageRequest
) -> tuple[list[Enrollment], int]:
    mine = sa.and_(enrollments.c.student_id == student_id, ACTIVE)
    total = await session.scalar(sa.select(sa.func.count()).select_from(enrollments).where(mine))
    if past_the_end(page.offset, total or 0):
        return [], int(total or 0)
    statement = (
        sa.select(*_ENROLLMENT_COLUMNS)
        .where(mine)
        .order_by(enrollments.c.enrolled_at.desc(), enrollments.c.id.desc())
        .limit(page.limit)
        .offset(page.offset)
    )
    return [_enrollment(row) for row in await session.execute(statement)], int(total or 0)


async def enrolled_course_ids(session: AsyncSession, student_id: int) -> list[int]:
    statement = (
        sa.select(enrollments.c.course_id)
        .where(enrollments.c.student_id == student_id, ACTIVE)
        .order_by(enrollments.c.course_id)
    )
    return list(await session.scalars(statement))


async def refresh_course_titles(session: AsyncSession, titles: Mapping[int, str]) -> None:
    """Store the catalog's current course titles (only rows whose title changed are written)."""
    if not titles:
        return
    ids, names = list(titles), [titles[key] for key in titles]
    current = (
        sa.func.unnest(_bigints(ids), sa.cast(sa.literal(names, ARRAY(sa.Text)), ARRAY(sa.Text)))
        .table_valued("enrollment_id", "course_title")
        .render_derived()
    )
    await session.execute(
        sa.update(enrollments)
        .where(
            enrollments.c.id == current.c.enrollment_id,
            enrollments.c.course_title != current.c.course_title,
        )
        .values(course_title=current.c.course_title, updated_at=clock_now())
    )


async def complete_enrollments(
    session: AsyncSession, enrollment_ids: Sequence[int]
) -> list[Enrollment]:
    """Set completed_at on those still open; returns only the rows this call completed, so a
    retry or a concurrent completion gets nothing back and emits nothing."""
    if not enrollment_ids:
        return []
    statement = (
        sa.update(enrollments)
        .where(enrollments.c.id.in_(list(enrollment_ids)), enrollments.c.completed_at.is_(None))
        .values(completed_at=clock_now(), updated_at=clock_now())
        .returning(*_ENROLLMENT_COLUMNS)
    )
    return [_enrollment(row) for row in await session.execute(statement)]


# Lesson progress ---------------------------------------------------------------------------


async def reconcile(
    session: AsyncSession, lessons_by_enrollment: Mapping[int, Sequence[CatalogLesson]]
) -> None:
    """Make each enrollment's progress rows match its course's current lessons, in two
    statements whatever the sizes: missing rows are inserted, titles and orders refreshed,
    rows of lessons that left the course marked removed (and revived if a lesson returns)."""
    if not lessons_by_enrollment:
        return
    enrollment_ids: list[int] = []
    lesson_ids: list[int] = []
    titles: list[str] = []
    orders: list[int] = []
    for enrollment_id, lessons in lessons_by_enrollment.items():
        for lesson in lessons:
            enrollment_ids.append(enrollment_id)
            lesson_ids.append(lesson.id)
            titles.append(lesson.title)
            orders.append(lesson.order)

    current = (
        sa.func.unnest(
            _bigints(enrollment_ids),
            _bigints(lesson_ids),
            sa.cast(sa.literal(titles, ARRAY(sa.Text)), ARRAY(sa.Text)),
            sa.cast(sa.literal(orders, ARRAY(sa.Integer)), ARRAY(sa.Integer)),
        )
        .table_valued("enrollment_id", "lesson_id", "lesson_title", "lesson_order")
        .render_derived()
    )
    upsert = insert(lesson_progress).from_select(
        ["enrollment_id", "lesson_id", "lesson_title", "lesson_order"],
        sa.select(
            current.c.enrollment_id,
            current.c.lesson_id,
            current.c.lesson_title,
            current.c.lesson_order,
        ),
    )
    row = lesson_progress.c
    upsert = upsert.on_conflict_do_update(
        index_elements=[row.enrollment_id, row.lesson_id],
        set_={
            "lesson_title": upsert.excluded.lesson_title,
            "lesson_order": upsert.excluded.lesson_order,
            "removed_at": None,
            "updated_at": clock_now(),
        },
        # Unchanged rows are not rewritten.
        where=sa.or_(
            row.lesson_title != upsert.excluded.lesson_title,
            row.lesson_order != upsert.excluded.lesson_order,
            row.removed_at.is_not(None),
        ),
    )
    await session.execute(upsert)

    still_there = (
        sa.func.unnest(_bigints(enrollment_ids), _bigints(lesson_ids))
        .table_valued("enrollment_id", "lesson_id")
        .render_derived(name="still_there")
    )
    await session.execute(
        sa.update(lesson_progress)
        .where(
            row.enrollment_id.in_(list(lessons_by_enrollment)),
            row.removed_at.is_(None),
            ~sa.exists().where(
                still_there.c.enrollment_id == row.enrollment_id,
                still_there.c.lesson_id == row.lesson_id,
            ),
        )
        .values(removed_at=clock_now(), updated_at=clock_now())
    )


async def lesson_states(
    session: AsyncSession, enrollment_ids: Sequence[int]
) -> dict[int, list[LessonState]]:
    """The lessons that count for each enrollment, in course order (one statement)."""
    result: dict[int, list[LessonState]] = {enrollment_id: [] for enrollment_id in enrollment_ids}
    if not enrollment_ids:
        return result
    row = lesson_progress.c
    statement = (
        sa.select(row.enrollment_id.label("of_enrollment"), *_LESSON_STATE_COLUMNS)
        .where(row.enrollment_id.in_(list(enrollment_ids)), row.removed_at.is_(None))
        .order_by(row.enrollment_id, row.lesson_order, row.lesson_id)
    )
    for record in await session.execute(statement):
        result[record.of_enrollment].append(to_row(LessonState, record))
    return result


def _visible_progress(student_id: int) -> sa.Select:
    """Progress rows the student may see: of their own enrollments, lesson still in the course."""
    return (
        sa.select(*_PROGRESS_COLUMNS)
        .join(enrollments, enrollments.c.id == lesson_progress.c.enrollment_id)
        .where(
            enrollments.c.student_id == student_id,
            ACTIVE,
            lesson_progress.c.removed_at.is_(None),
        )
    )


async def progress_of(session: AsyncSession, student_id: int, progress_id: int) -> Progress | None:
    statement = _visible_progress(student_id).where(lesson_progress.c.id == progress_id)
    row = (await session.execute(statement)).one_or_none()
    return _progress(row) if row else None


async def enrollment_id_of_progress(
    session: AsyncSession, student_id: int, progress_id: int
) -> int | None:
    """The enrollment a progress row belongs to, if it is the student's (removed rows too: the
    caller reconciles first and then decides)."""
    statement = (
        sa.select(lesson_progress.c.enrollment_id)
        .join(enrollments, enrollments.c.id == lesson_progress.c.enrollment_id)
        .where(lesson_progress.c.id == progress_id, enrollments.c.student_id == student_id, ACTIVE)
    )
    return await session.scalar(statement)


async def list_progress(
    session: AsyncSession, student_id: int, enrollment_id: int | None, page: PageRequest
) -> tuple[list[Progress], int]:
    visible = _visible_progress(student_id)
    if enrollment_id is not None:
        visible = visible.where(lesson_progress.c.enrollment_id == enrollment_id)
    total = await session.scalar(sa.select(sa.func.count()).select_from(visible.subquery()))
    if past_the_end(page.offset, total or 0):
        return [], int(total or 0)
    statement = (
        visible.order_by(
            lesson_progress.c.enrollment_id,
            lesson_progress.c.lesson_order,
            lesson_progress.c.lesson_id,
        )
        .limit(page.limit)
        .offset(page.offset)
    )
    return [_progress(row) for row in await session.execute(statement)], int(total or 0)


async def complete_progress(session: AsyncSession, progress_id: int) -> Progress | None:
    """Mark one row completed; None when it already was (completion is one-way)."""
    statement = (
        sa.update(lesson_progress)
        .where(lesson_progress.c.id == progress_id, lesson_progress.c.completed.is_(False))
        .values(completed=True, completed_at=clock_now(), updated_at=clock_now())
        .returning(*_PROGRESS_COLUMNS)
    )
    row = (await session.execute(statement)).one_or_none()
    return _progress(row) if row else None


# Lesson copies -----------------------------------------------------------------------------
# Learning's own copy of each course's title and lesson list (ids, orders, titles; no content),
# so reads need no catalog call (docs/learning.md "The copy of each course's lessons").

course_lessons = sa.Table(
    "course_lessons",
    metadata,
    sa.Column("course_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
    # Raised by every CourseChanged event, also for courses nothing is copied of yet: a copy
    # fetched just before an event it did not include is then stale at once, whatever the order.
    sa.Column("latest_version", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("course_title", sa.String(255)),
    # [[lesson id, order, title], ...] in course order; NULL while nothing is copied.
    sa.Column("lessons", JSONB),
    sa.Column("gone", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("checked_at", sa.DateTime(timezone=True)),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)


def _lesson_copy(row: sa.Row) -> LessonCopy:
    course = None
    if row.lessons is not None and not row.gone:
        course = CatalogCourse(
            id=row.course_id,
            title=row.course_title or "",
            lessons=tuple(
                CatalogLesson(id=lesson_id, order=order, title=title)
                for lesson_id, order, title in row.lessons
            ),
            version=row.version,
        )
    return LessonCopy(
        course_id=row.course_id,
        version=row.version,
        latest_version=row.latest_version,
        course=course,
        gone=row.gone,
        checked_at=row.checked_at,
    )


async def lesson_copies(session: AsyncSession, course_ids: Sequence[int]) -> dict[int, LessonCopy]:
    """The stored copies of these courses (one statement); a course without a row is absent."""
    if not course_ids:
        return {}
    c = course_lessons.c
    statement = sa.select(
        c.course_id, c.version, c.latest_version, c.course_title, c.lessons, c.gone, c.checked_at
    ).where(c.course_id.in_(list(course_ids)))
    return {row.course_id: _lesson_copy(row) for row in await session.execute(statement)}


async def announce_versions(session: AsyncSession, versions: Mapping[int, int]) -> None:
    """Record the versions CourseChanged events announced (course id -> version), keeping the
    highest: one statement, idempotent, so a redelivered or reordered event changes nothing."""
    if not versions:
        return
    # Rows in course id order, as in store_copies: two upserts never wait for each other in turn.
    upsert = insert(course_lessons).values(
        [{"course_id": key, "latest_version": versions[key]} for key in sorted(versions)]
    )
    c = course_lessons.c
    await session.execute(
        upsert.on_conflict_do_update(
            index_elements=[c.course_id],
            set_={"latest_version": upsert.excluded.latest_version, "updated_at": clock_now()},
            where=c.latest_version < upsert.excluded.latest_version,
        )
    )


async def store_copies(
    session: AsyncSession,
    courses: Sequence[CatalogCourse],
    gone: Sequence[int],
    checked_at: datetime,
) -> None:
    """Store what the catalog answered (call started at `checked_at`): the courses it returned,
    and `gone` for those it no longer knows. One statement; a copy is never replaced by an older
    version (two replicas refreshing at once), and a gone course is copied at the latest
    version announced (deletion is final)."""
    by_id: dict[int, dict[str, object]] = {
        course.id: {
            "course_id": course.id,
            "version": course.version,
            "course_title": course.title,
            "lessons": [[lesson.id, lesson.order, lesson.title] for lesson in course.lessons],
            "gone": False,
            "checked_at": checked_at,
        }
        for course in courses
    }
    for course_id in gone:
        by_id[course_id] = {
            "course_id": course_id,
            "version": 0,
            "course_title": None,
            "lessons": None,
            "gone": True,
            "checked_at": checked_at,
        }
    if not by_id:
        return
    # One lock order (course id) for every upsert of the table, so two never deadlock.
    rows = [by_id[course_id] for course_id in sorted(by_id)]
    upsert = insert(course_lessons).values(rows)
    c, new = course_lessons.c, upsert.excluded
    await session.execute(
        upsert.on_conflict_do_update(
            index_elements=[c.course_id],
            set_={
                "version": sa.case(
                    (new.gone, sa.func.greatest(c.version, c.latest_version)),
                    else_=new.version,
                ),
                "course_title": new.course_title,
                "lessons": new.lessons,
                "gone": new.gone,
                "checked_at": new.checked_at,
                "updated_at": clock_now(),
            },
            where=sa.or_(new.gone, new.version >= c.version),
        )
    )
