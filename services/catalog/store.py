"""Tables of schema `catalog` and the queries the service runs on them.

Soft delete: a deleted course (and its lessons) keeps its row with `deleted_at` set, so its code
is never handed out again and nothing that referenced it by id is left dangling; every query
here reads live rows only. Lesson `order` is unique among a course's live lessons by a partial
unique index, which is what settles concurrent creates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, REGCONFIG, TSVECTOR
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from libs.db import clock_now, from_row, row_columns, schema_metadata, to_row
from libs.outbox import Outbox
from libs.paging import past_the_end
from services.catalog import SCHEMA
from services.catalog.domain import (
    Course,
    CourseChange,
    CourseQuery,
    CourseStatus,
    CourseWithLessons,
    Lesson,
    ListScope,
    NewLesson,
)

metadata = schema_metadata(SCHEMA)

# Codes come from their own sequence: unique under concurrent creates, never reused (a sequence
# never hands a value out twice, even when the transaction that drew it rolls back).
course_code_seq = sa.Sequence("course_code_seq", metadata=metadata)

courses = sa.Table(
    "courses",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("code", sa.String(32), nullable=False, unique=True),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("short_description", sa.String(500), nullable=False),
    # The instructor's user id in identity (another schema: no foreign key on purpose).
    sa.Column("instructor_id", sa.BigInteger, nullable=False),
    # Snapshot of the instructor's name from their token at creation (see docs/catalog.md).
    sa.Column("instructor_name", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=CourseStatus.DRAFT.value),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("deleted_at", sa.DateTime(timezone=True)),
    # +1 on every change of the course or its lessons, in the statement that makes the change
    # (lesson writes: `bump_version`), so the row lock orders every change of one course.
    sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
    # What `?search=` matches: title (weight A) and short description (B), stemmed with the
    # `english` configuration; kept by PostgreSQL itself on every write (a generated column).
    sa.Column(
        "search_document",
        TSVECTOR,
        sa.Computed(
            "setweight(to_tsvector('english'::regconfig, (title)::text), 'A'::\"char\")"
            " || setweight(to_tsvector('english'::regconfig, (short_description)::text),"
            " 'B'::\"char\")",
            persisted=True,
        ),
    ),
    sa.CheckConstraint("status IN ('draft', 'published')", name="status"),
)
# Full-text search over the live catalogue (see docs/catalog.md).
SEARCH_CONFIG = "english"
# fastupdate off: course writes are rare, so entries go straight into the index and searches
# never scan a pending list (nor does the planner shy away from the index while one is long).
sa.Index(
    "ix_courses_search_document",
    courses.c.search_document,
    postgresql_using="gin",
    postgresql_with={"fastupdate": "off"},
)
# The two listings: an instructor's own courses, and the published catalogue (newest first).
sa.Index(
    "ix_courses_instructor_live",
    courses.c.instructor_id,
    courses.c.id,
    postgresql_where=courses.c.deleted_at.is_(None),
)
sa.Index(
    "ix_courses_published_live",
    courses.c.id,
    postgresql_where=sa.and_(courses.c.status == "published", courses.c.deleted_at.is_(None)),
)

lessons = sa.Table(
    "lessons",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("course_id", sa.BigInteger, sa.ForeignKey(courses.c.id), nullable=False),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    # `order` in the API; `position` here because ORDER is a reserved word in SQL.
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("deleted_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint("position >= 1", name="position_positive"),
)
LESSON_ORDER_INDEX = "uq_lessons_course_live_position"
# One live lesson per (course, order); also the index every "lessons of a course" read uses.
sa.Index(
    LESSON_ORDER_INDEX,
    lessons.c.course_id,
    lessons.c.position,
    unique=True,
    postgresql_where=lessons.c.deleted_at.is_(None),
)

# The shared outbox (libs/outbox.py): table `catalog.outbox`, channel `catalog_outbox`.
outbox = Outbox(metadata)

UNIQUE_VIOLATION = "23505"

Lock = Literal["update"] | None
# Reads run on a Core connection (libs.db.read) or inside a write's session; both execute Core.
Executor: TypeAlias = AsyncSession | AsyncConnection


class OrderTaken(Exception):
    """The lesson order index refused a row: that order is already used in the course."""


_COURSE_COLUMNS = row_columns(courses, Course)
_LESSON_COLUMNS = row_columns(lessons, Lesson, renamed={"order": "position"})
_LESSON_ORDERING = (lessons.c.course_id, lessons.c.position, lessons.c.id)


def _course(row: sa.Row) -> Course:
    return from_row(Course, row)


def _lesson(row: sa.Row) -> Lesson:
    return from_row(Lesson, row)


def _is_order_conflict(error: IntegrityError) -> bool:
    diag = getattr(error.orig, "diag", None)
    return (
        getattr(error.orig, "sqlstate", None) == UNIQUE_VIOLATION
        and getattr(diag, "constraint_name", None) == LESSON_ORDER_INDEX
    )


def _with_lock(statement: sa.Select, lock: Lock, of: sa.Table) -> sa.Select:
    if lock == "update":
        # FOR NO KEY UPDATE: what an UPDATE of non-key columns takes anyway.
        return statement.with_for_update(key_share=True, of=of)
    return statement


# --- courses -----------------------------------------------------------------------------------


async def next_course_number(session: AsyncSession) -> int:
    return int((await session.execute(sa.select(course_code_seq.next_value()))).scalar_one())


async def insert_course(
    session: AsyncSession,
    *,
    code: str,
    instructor_id: int,
    instructor_name: str,
    **fields: str,
) -> Course:
    """`fields`: the writable fields, by column name (the domain's COURSE_FIELDS)."""
    statement = (
        sa.insert(courses)
        .values(
            code=code,
            instructor_id=instructor_id,
            instructor_name=instructor_name,
            **fields,
        )
        .returning(*_COURSE_COLUMNS)
    )
    return _course((await session.execute(statement)).one())


async def course_by_id(session: Executor, course_id: int, lock: Lock = None) -> Course | None:
    statement = sa.select(*_COURSE_COLUMNS).where(
        courses.c.id == course_id, courses.c.deleted_at.is_(None)
    )
    row = (await session.execute(_with_lock(statement, lock, courses))).one_or_none()
    return _course(row) if row else None


async def update_course(session: AsyncSession, course_id: int, values: dict[str, str]) -> Course:
    statement = (
        sa.update(courses)
        .where(courses.c.id == course_id)
        .values(**values, updated_at=clock_now(), version=courses.c.version + 1)
        .returning(*_COURSE_COLUMNS)
    )
    return _course((await session.execute(statement)).one())


async def publish_course(session: AsyncSession, course_id: int) -> Course:
    statement = (
        sa.update(courses)
        .where(courses.c.id == course_id)
        .values(
            status=CourseStatus.PUBLISHED.value,
            published_at=clock_now(),
            updated_at=clock_now(),
            version=courses.c.version + 1,
        )
        .returning(*_COURSE_COLUMNS)
    )
    return _course((await session.execute(statement)).one())


async def soft_delete_course(session: AsyncSession, course_id: int) -> CourseChange:
    """The course and its live lessons get one deletion time, in the caller's transaction."""
    now = await session.scalar(sa.select(clock_now()))
    await session.execute(
        sa.update(lessons)
        .where(lessons.c.course_id == course_id, lessons.c.deleted_at.is_(None))
        .values(deleted_at=now)
    )
    statement = (
        sa.update(courses)
        .where(courses.c.id == course_id)
        .values(deleted_at=now, version=courses.c.version + 1)
        .returning(courses.c.id, courses.c.version, courses.c.deleted_at)
    )
    row = (await session.execute(statement)).one()
    return CourseChange(row.id, row.version, row.deleted_at)


async def bump_version(session: AsyncSession, course_id: int) -> CourseChange | None:
    """A change of the course's lessons: +1 on its version, which also locks the course row
    until the transaction ends, so the lesson writes of one course happen one at a time (and
    after, never during, a delete or publish). None when the course is gone."""
    statement = (
        sa.update(courses)
        .where(courses.c.id == course_id, courses.c.deleted_at.is_(None))
        .values(version=courses.c.version + 1)
        .returning(courses.c.id, courses.c.version, clock_now().label("changed_at"))
    )
    row = (await session.execute(statement)).one_or_none()
    return CourseChange(row.id, row.version, row.changed_at) if row else None


def _course_conditions(scope: ListScope, ids: Sequence[int] | None) -> list[sa.ColumnElement]:
    conditions: list[sa.ColumnElement] = [courses.c.deleted_at.is_(None)]
    if scope.instructor_id is not None:
        conditions.append(courses.c.instructor_id == scope.instructor_id)
    if scope.published_only:
        conditions.append(courses.c.status == CourseStatus.PUBLISHED.value)
    if ids is not None:
        conditions.append(courses.c.id.in_(ids))
    return conditions


# The lessons of a page's courses: `= ANY(array)` keeps one statement text whatever the number
# of ids (an expanded IN list is a new text per count), so psycopg prepares it once per connection.
_LESSONS_OF_COURSES = (
    sa.select(*_LESSON_COLUMNS)
    .where(
        lessons.c.course_id == sa.any_(sa.bindparam("course_ids", type_=ARRAY(sa.BigInteger))),
        lessons.c.deleted_at.is_(None),
    )
    .order_by(*_LESSON_ORDERING)
)


async def lessons_of_courses(
    session: Executor, course_ids: Sequence[int]
) -> dict[int, list[Lesson]]:
    """Every live lesson of the given courses, by order, in ONE statement whatever their number."""
    by_course: dict[int, list[Lesson]] = {course_id: [] for course_id in course_ids}
    if not course_ids:
        return by_course
    result = await session.execute(_LESSONS_OF_COURSES, {"course_ids": list(course_ids)})
    for row in result:
        lesson = _lesson(row)
        by_course[lesson.course_id].append(lesson)
    return by_course


async def course_with_lessons(session: Executor, course: Course) -> CourseWithLessons:
    lessons_by_course = await lessons_of_courses(session, [course.id])
    return CourseWithLessons(course, lessons_by_course[course.id])


_COURSE_FIELD_COUNT = len(_COURSE_COLUMNS)
# A live course and its live lessons in ONE statement (the course row repeats per lesson; a
# course without lessons comes back as one row of NULL lesson columns).
_COURSE_WITH_LESSONS = (
    sa.select(*_COURSE_COLUMNS, *(c.label(f"lesson__{c.name}") for c in _LESSON_COLUMNS))
    .select_from(
        courses.outerjoin(
            lessons, sa.and_(lessons.c.course_id == courses.c.id, lessons.c.deleted_at.is_(None))
        )
    )
    .where(courses.c.id == sa.bindparam("course_id"), courses.c.deleted_at.is_(None))
    .order_by(lessons.c.position, lessons.c.id)
)


async def course_with_lessons_by_id(session: Executor, course_id: int) -> CourseWithLessons | None:
    """The course with every live lesson by order, or None when there is no live course."""
    rows = (await session.execute(_COURSE_WITH_LESSONS, {"course_id": course_id})).all()
    if not rows:
        return None
    split = _COURSE_FIELD_COUNT
    course = Course(*rows[0][:split])
    found = [Lesson(*row[split:]) for row in rows if row[split] is not None]
    return CourseWithLessons(course, found)


def _ordering(query: CourseQuery, rank: sa.ColumnElement[float] | None) -> list[Any]:
    """ORDER BY of a course list: the chosen key, then id the same way (ties); by default by
    relevance when searching, else newest first."""
    direction = sa.desc if query.descending else sa.asc
    if query.ordering == "code":
        # COURSE-9999 sorts before COURSE-10000: shorter codes first.
        return [
            direction(sa.func.length(courses.c.code)),
            direction(courses.c.code),
            direction(courses.c.id),
        ]
    if query.ordering is not None:
        return [direction(courses.c[query.ordering]), direction(courses.c.id)]
    if rank is not None:
        return [rank.desc(), courses.c.id.desc()]
    return [courses.c.id.desc()]


async def list_courses(
    session: Executor,
    scope: ListScope,
    ids: Sequence[int] | None,
    *,
    offset: int,
    limit: int,
    query: CourseQuery | None = None,
) -> tuple[list[CourseWithLessons], int]:
    """One page of courses (newest first, or as `query` asks) with all their lessons, and the
    total match count.

    Three statements whatever the page size or the number of lessons: count, page, lessons of
    the page's courses (two when the page is empty, one past the end).
    """
    query = query or CourseQuery()
    conditions = _course_conditions(scope, ids)
    rank = None
    if query.instructor_id is not None:
        conditions.append(courses.c.instructor_id == query.instructor_id)
    if query.search:
        # websearch_to_tsquery takes any user text (quotes, "or", -word) without syntax errors.
        tsquery = sa.func.websearch_to_tsquery(
            sa.cast(SEARCH_CONFIG, REGCONFIG), sa.literal(query.search)
        )
        conditions.append(courses.c.search_document.bool_op("@@")(tsquery))
        rank = sa.func.ts_rank(courses.c.search_document, tsquery)
    total = int(
        await session.scalar(sa.select(sa.func.count()).select_from(courses).where(*conditions))
        or 0
    )
    if past_the_end(offset, total):
        return [], total
    page = (
        sa.select(*_COURSE_COLUMNS)
        .where(*conditions)
        .order_by(*_ordering(query, rank))
        .offset(offset)
        .limit(limit)
    )
    rows = [_course(row) for row in (await session.execute(page)).all()]
    lessons_by_course = await lessons_of_courses(session, [row.id for row in rows])
    return [CourseWithLessons(row, lessons_by_course[row.id]) for row in rows], total


# --- lessons -----------------------------------------------------------------------------------


async def taken_orders(session: AsyncSession, course_id: int, orders: Sequence[int]) -> list[int]:
    statement = sa.select(lessons.c.position).where(
        lessons.c.course_id == course_id,
        lessons.c.deleted_at.is_(None),
        lessons.c.position.in_(orders),
    )
    return sorted(await session.scalars(statement))


async def insert_lessons(
    session: AsyncSession, course_id: int, new_lessons: Sequence[NewLesson]
) -> list[Lesson]:
    """All rows in one statement; raises OrderTaken when the order index refuses any of them.

    Rows go in ascending order, so two racing requests wait on each other's index entries in
    the same order and one of them simply loses (opposite orders could deadlock instead).
    """
    statement = (
        sa.insert(lessons)
        .values(
            [
                {
                    "course_id": course_id,
                    "title": lesson.title,
                    "content": lesson.content,
                    "position": lesson.order,
                }
                for lesson in sorted(new_lessons, key=lambda lesson: lesson.order)
            ]
        )
        .returning(*_LESSON_COLUMNS)
    )
    try:
        rows = (await session.execute(statement)).all()
    except IntegrityError as exc:
        if _is_order_conflict(exc):
            raise OrderTaken from exc
        raise
    return sorted((_lesson(row) for row in rows), key=lambda lesson: lesson.order)


async def lesson_by_id(session: Executor, lesson_id: int) -> tuple[Lesson, Course] | None:
    """A live lesson of a live course, with its course."""
    statement = (
        sa.select(*_LESSON_COLUMNS, *(c.label(f"course__{c.name}") for c in _COURSE_COLUMNS))
        .select_from(lessons.join(courses, lessons.c.course_id == courses.c.id))
        .where(
            lessons.c.id == lesson_id,
            lessons.c.deleted_at.is_(None),
            courses.c.deleted_at.is_(None),
        )
    )
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        return None
    return to_row(Lesson, row), to_row(Course, row, prefix="course__")


async def update_lesson(
    session: AsyncSession, lesson_id: int, values: dict[str, str | int]
) -> Lesson | None:
    """The lesson changed, or None when it was deleted meanwhile."""
    columns = {("position" if name == "order" else name): value for name, value in values.items()}
    statement = (
        sa.update(lessons)
        .where(lessons.c.id == lesson_id, lessons.c.deleted_at.is_(None))
        .values(**columns, updated_at=clock_now())
        .returning(*_LESSON_COLUMNS)
    )
    try:
        row = (await session.execute(statement)).one_or_none()
    except IntegrityError as exc:
        if _is_order_conflict(exc):
            raise OrderTaken from exc
        raise
    return _lesson(row) if row else None


async def soft_delete_lesson(session: AsyncSession, lesson_id: int) -> bool:
    """False when the lesson was deleted meanwhile."""
    statement = (
        sa.update(lessons)
        .where(lessons.c.id == lesson_id, lessons.c.deleted_at.is_(None))
        .values(deleted_at=clock_now())
        .returning(lessons.c.id)
    )
    return (await session.execute(statement)).one_or_none() is not None


def _lesson_conditions(
    scope: ListScope, course_id: int | None, course_ids: Sequence[int] | None
) -> list[sa.ColumnElement]:
    conditions = [lessons.c.deleted_at.is_(None), *_course_conditions(scope, course_ids)]
    if course_id is not None:
        conditions.append(lessons.c.course_id == course_id)
    return conditions


async def list_lessons(
    session: Executor,
    scope: ListScope,
    *,
    course_id: int | None,
    course_ids: Sequence[int] | None,
    offset: int,
    limit: int | None,
) -> tuple[list[Lesson], int]:
    """Lessons of the caller's courses (optionally narrowed), by course then order; `limit`
    None returns every match."""
    joined = lessons.join(courses, lessons.c.course_id == courses.c.id)
    conditions = _lesson_conditions(scope, course_id, course_ids)
    statement = (
        sa.select(*_LESSON_COLUMNS)
        .select_from(joined)
        .where(*conditions)
        .order_by(*_LESSON_ORDERING)
    )
    if limit is None:
        rows = [_lesson(row) for row in (await session.execute(statement)).all()]
        return rows, len(rows)
    total = int(
        await session.scalar(sa.select(sa.func.count()).select_from(joined).where(*conditions)) or 0
    )
    if past_the_end(offset, total):
        return [], total
    page = statement.offset(offset).limit(limit)
    return [_lesson(row) for row in (await session.execute(page)).all()], total
