"""Catalog use cases: each loads what the rules need, applies them, and writes, in one
transaction (`libs.db.write`: its `work` does nothing but database work, so a transaction whose
connection dropped before COMMIT can run again); reads go through `libs.db.read`. The caller
is always the verified token's claims; nothing about visibility comes from the request. api.py
only translates to and from protos.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from libs.claims import Claims
from libs.db import engine_of, read, write
from libs.errors import FailedPrecondition, InvalidArgument, NotFound
from libs.paging import page_request
from services.catalog import store
from services.catalog.domain import (
    COURSE_FIELDS,
    COURSE_NOT_FOUND,
    LESSON_FIELDS,
    LESSON_NOT_FOUND,
    Course,
    CourseChange,
    CourseWithLessons,
    Lesson,
    NewLesson,
    clean_course_fields,
    clean_course_query,
    clean_id_filter,
    clean_lesson_fields,
    clean_new_lesson,
    clean_new_lessons,
    course_change,
    course_code,
    ensure_can_create_course,
    ensure_enrollable,
    ensure_owner,
    ensure_publishable,
    is_lesson_readable,
    list_scope,
    order_taken,
    orders_taken,
    parse_update_mask,
    visible,
)
from services.catalog.events import course_changed

COURSE_REQUIRED = "This field is required."
UNPAGED_NEEDS_FILTER = "Only allowed together with course_id or course_ids."
ORDERS_RACED = "An order in this request was just taken in this course; nothing was created."
INSTRUCTOR_NAME_MAX = 255


def instructor_name(caller: Claims) -> str:
    """The name shown on a course: the creator's name in their token at creation time."""
    return (caller.full_name.strip() or caller.email)[:INSTRUCTOR_NAME_MAX]


async def record_change(session: AsyncSession, change: CourseChange) -> None:
    """Every write of a course or its lessons ends here: its CourseChanged event goes into the
    outbox in the write's own transaction (a rollback takes both)."""
    await store.outbox.insert(session, [course_changed(change)])


class Catalog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        # Reads go through libs.db.read: a Core connection, no session, retried once on a drop.
        self._engine = engine_of(sessions)

    # --- courses -------------------------------------------------------------------------------

    async def create_course(self, caller: Claims, values: Mapping[str, str]) -> CourseWithLessons:
        """`values` holds every writable field (COURSE_FIELDS)."""
        ensure_can_create_course(caller)
        fields = clean_course_fields(values, COURSE_FIELDS)

        async def work(session: AsyncSession) -> CourseWithLessons:
            number = await store.next_course_number(session)
            course = await store.insert_course(
                session,
                code=course_code(number),
                instructor_id=caller.user_id,
                instructor_name=instructor_name(caller),
                **fields,
            )
            await record_change(session, course_change(course))
            return CourseWithLessons(course, [])

        return await write(self._sessions, work)

    async def get_course(self, caller: Claims, course_id: int) -> CourseWithLessons:
        async def load(connection: AsyncConnection) -> CourseWithLessons | None:
            return await store.course_with_lessons_by_id(connection, course_id)

        found = await read(self._engine, load)
        if found is None:
            raise NotFound(COURSE_NOT_FOUND)
        visible(found.course, caller)
        return found

    async def list_courses(
        self,
        caller: Claims,
        *,
        page: int,
        page_size: int,
        course_ids: Sequence[int],
        search: str = "",
        ordering: str = "",
        instructor_id: int = 0,
    ) -> tuple[list[CourseWithLessons], int]:
        """A page of what the caller sees, narrowed by `search` (full text), one instructor's
        courses and `course_ids`, in the chosen `ordering`."""
        window = page_request(page, page_size)
        ids = clean_id_filter(course_ids, "course_ids")
        scope = list_scope(caller)
        query = clean_course_query(search, ordering, instructor_id)

        async def load(connection: AsyncConnection) -> tuple[list[CourseWithLessons], int]:
            return await store.list_courses(
                connection, scope, ids, offset=window.offset, limit=window.limit, query=query
            )

        return await read(self._engine, load)

    async def update_course(
        self, caller: Claims, course_id: int, values: Mapping[str, str], mask: Sequence[str]
    ) -> CourseWithLessons:
        """Changes the masked fields; an empty mask changes nothing (ownership still checked)."""
        fields = parse_update_mask(mask, COURSE_FIELDS)

        async def work(session: AsyncSession) -> CourseWithLessons:
            course = await self._owned_course(session, caller, course_id, lock="update")
            cleaned = clean_course_fields(values, fields)
            if cleaned:
                course = await store.update_course(session, course.id, cleaned)
                await record_change(session, course_change(course))
            return await store.course_with_lessons(session, course)

        return await write(self._sessions, work)

    async def delete_course(self, caller: Claims, course_id: int) -> None:
        async def work(session: AsyncSession) -> None:
            course = await self._owned_course(session, caller, course_id, lock="update")
            await record_change(session, await store.soft_delete_course(session, course.id))

        return await write(self._sessions, work)

    async def publish_course(self, caller: Claims, course_id: int) -> CourseWithLessons:
        async def work(session: AsyncSession) -> CourseWithLessons:
            # Locked, so two concurrent publishes cannot both see a draft.
            course = await self._owned_course(session, caller, course_id, lock="update")
            ensure_publishable(course)
            course = await store.publish_course(session, course.id)
            await record_change(session, course_change(course))
            return await store.course_with_lessons(session, course)

        return await write(self._sessions, work)

    async def course_for_enrollment(self, caller: Claims, course_id: int) -> CourseWithLessons:
        """For the learning service: a published course with its lessons, or why not."""

        async def load(connection: AsyncConnection) -> CourseWithLessons | None:
            return await store.course_with_lessons_by_id(connection, course_id)

        found = await read(self._engine, load)
        if found is None:
            raise NotFound(COURSE_NOT_FOUND)
        ensure_enrollable(found.course)
        return found

    async def own_course(self, caller: Claims, course_id: int) -> CourseWithLessons:
        """For the learning service's instructor views: the caller's own course with its
        lessons; NotFound when they cannot see it, PermissionDenied when it is another's."""

        async def load(connection: AsyncConnection) -> CourseWithLessons | None:
            return await store.course_with_lessons_by_id(connection, course_id)

        found = await read(self._engine, load)
        if found is None:
            raise NotFound(COURSE_NOT_FOUND)
        visible(found.course, caller)
        ensure_owner(found.course, caller)
        return found

    # --- lessons -------------------------------------------------------------------------------

    async def create_lesson(
        self, caller: Claims, course_id: int, *, title: str, content: str, order: int
    ) -> Lesson:
        self._require_course_id(course_id)

        async def work(session: AsyncSession) -> Lesson:
            course = await self._owned_course(session, caller, course_id)
            lesson = clean_new_lesson(title, content, order)
            change = await self._lessons_change(session, course.id)
            try:
                created = await store.insert_lessons(session, course.id, [lesson])
            except store.OrderTaken:
                # The unique index decided (also under concurrent creates of the same order).
                raise order_taken() from None
            await record_change(session, change)
            return created[0]

        return await write(self._sessions, work)

    async def bulk_create_lessons(
        self, caller: Claims, course_id: int, lessons: Sequence[NewLesson]
    ) -> list[Lesson]:
        """All lessons in one transaction, or none."""
        self._require_course_id(course_id)

        async def work(session: AsyncSession) -> list[Lesson]:
            course = await self._owned_course(session, caller, course_id)
            cleaned = clean_new_lessons(lessons)
            change = await self._lessons_change(session, course.id)
            taken = await store.taken_orders(session, course.id, [x.order for x in cleaned])
            if taken:
                raise orders_taken(taken)
            try:
                created = await store.insert_lessons(session, course.id, cleaned)
            except store.OrderTaken:
                raise FailedPrecondition.on_field("lessons", ORDERS_RACED) from None
            await record_change(session, change)
            return created

        return await write(self._sessions, work)

    async def get_lesson(self, caller: Claims, lesson_id: int) -> Lesson:

        async def load(connection: AsyncConnection) -> tuple[Lesson, Course] | None:
            return await store.lesson_by_id(connection, lesson_id)

        found = await read(self._engine, load)
        if found is None or not is_lesson_readable(found[1], caller):
            raise NotFound(LESSON_NOT_FOUND)
        return found[0]

    async def list_lessons(
        self,
        caller: Claims,
        *,
        course_id: int,
        course_ids: Sequence[int],
        page: int,
        page_size: int,
        unpaged: bool,
    ) -> tuple[list[Lesson], int]:
        ids = clean_id_filter(course_ids, "course_ids")
        if course_id < 0:
            raise InvalidArgument.on_field("course", "Ensure this value is greater than 0.")
        if unpaged and not course_id and ids is None:
            raise InvalidArgument.on_field("unpaged", UNPAGED_NEEDS_FILTER)
        window = page_request(page, page_size)
        scope = list_scope(caller)

        async def load(connection: AsyncConnection) -> tuple[list[Lesson], int]:
            return await store.list_lessons(
                connection,
                scope,
                course_id=course_id or None,
                course_ids=ids,
                offset=0 if unpaged else window.offset,
                limit=None if unpaged else window.limit,
            )

        return await read(self._engine, load)

    async def update_lesson(
        self,
        caller: Claims,
        lesson_id: int,
        values: Mapping[str, str | int],
        mask: Sequence[str],
    ) -> Lesson:
        """Changes the masked fields; an empty mask changes nothing (ownership still checked)."""
        fields = parse_update_mask(mask, LESSON_FIELDS)

        async def work(session: AsyncSession) -> Lesson:
            lesson = await self._owned_lesson(session, caller, lesson_id)
            cleaned = clean_lesson_fields(values, fields)
            if not cleaned:
                return lesson
            change = await self._lessons_change(session, lesson.course_id)
            try:
                updated = await store.update_lesson(session, lesson.id, cleaned)
            except store.OrderTaken:
                raise order_taken() from None
            if updated is None:  # deleted before we held the course
                raise NotFound(LESSON_NOT_FOUND)
            await record_change(session, change)
            return updated

        return await write(self._sessions, work)

    async def delete_lesson(self, caller: Claims, lesson_id: int) -> None:
        async def work(session: AsyncSession) -> None:
            lesson = await self._owned_lesson(session, caller, lesson_id)
            change = await self._lessons_change(session, lesson.course_id)
            if not await store.soft_delete_lesson(session, lesson.id):
                raise NotFound(LESSON_NOT_FOUND)
            await record_change(session, change)

        return await write(self._sessions, work)

    # --- shared lookups ------------------------------------------------------------------------

    @staticmethod
    def _require_course_id(course_id: int) -> None:
        if course_id <= 0:
            raise InvalidArgument.on_field("course", COURSE_REQUIRED)

    @staticmethod
    async def _lessons_change(session: AsyncSession, course_id: int) -> CourseChange:
        """Before any lesson write: the course's next version, which locks the course row (every
        change of one course waits for the one before it, in the same lock order: course, then
        lessons). NOT_FOUND when the course was deleted since the caller's check."""
        change = await store.bump_version(session, course_id)
        if change is None:
            raise NotFound(COURSE_NOT_FOUND)
        return change

    @staticmethod
    async def _owned_course(
        session: AsyncSession, caller: Claims, course_id: int, *, lock: store.Lock = None
    ) -> Course:
        """The course, NOT_FOUND when hidden from the caller, PERMISSION_DENIED when not theirs."""
        course = visible(await store.course_by_id(session, course_id, lock=lock), caller)
        ensure_owner(course, caller)
        return course

    @staticmethod
    async def _owned_lesson(session: AsyncSession, caller: Claims, lesson_id: int) -> Lesson:
        """Read without a lock: what may change meanwhile is rechecked once the course is held."""
        found = await store.lesson_by_id(session, lesson_id)
        if found is None:
            raise NotFound(LESSON_NOT_FOUND)
        lesson, course = found
        ensure_owner(visible(course, caller, LESSON_NOT_FOUND), caller)
        return lesson
