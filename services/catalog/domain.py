"""Catalog rules: what a valid course or lesson is, who sees which course, who may change it.

Pure functions over plain values, no I/O: the use cases (usecases.py) load rows, ask these rules,
and write. Field names in errors are the REST ones (`course`, `order`, `lessons.2.title`), so
the gateway can hand them to clients unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, TypeVar

from libs.claims import Claims
from libs.errors import (
    DomainError,
    FailedPrecondition,
    FieldErrorCollector,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from libs.text import text_problem

COURSE_TITLE_MAX = 255
SHORT_DESCRIPTION_MAX = 500
LESSON_TITLE_MAX = 255
# Lessons are text; a bound keeps one request from filling the database (the gateway's body
# limit is 1 MiB, gRPC's default message limit 4 MiB).
LESSON_CONTENT_MAX = 100_000
ORDER_MIN = 1
ORDER_MAX = 2**31 - 1  # proto int32
MAX_BULK_LESSONS = 500
# Bound on `course_ids` filters from internal callers: one SQL array, not an unbounded list.
MAX_FILTER_IDS = 1000

BLANK = "This field may not be blank."
NUL = "Null characters are not allowed."
COURSE_NOT_FOUND = "Course not found."
LESSON_NOT_FOUND = "Lesson not found."
NOT_OWNER = "You can only change your own courses."
ONLY_INSTRUCTORS = "Only instructors can create courses."
NOT_A_DRAFT = "Only a draft course can be published; this course is already {status}."
NOT_PUBLISHED = "Only published courses can be enrolled in"
ORDER_TAKEN = "A lesson with this order already exists in this course."


@dataclass(frozen=True)
class Course:
    id: int
    code: str
    title: str
    short_description: str
    instructor_id: int
    instructor_name: str
    status: str
    created_at: datetime
    updated_at: datetime
    # 1 at creation, +1 on every change of the course or any of its lessons (docs/catalog.md
    # "Change events").
    version: int


@dataclass(frozen=True)
class CourseChange:
    """A committed change of a course or its lessons: what its CourseChanged event says."""

    course_id: int
    version: int
    changed_at: datetime


def course_change(course: Course) -> CourseChange:
    """The change a write of the course row itself made (create, update, publish): the version
    it now has, at the time it was stamped with."""
    return CourseChange(course.id, course.version, course.updated_at)


@dataclass(frozen=True)
class Lesson:
    id: int
    course_id: int
    title: str
    content: str
    order: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CourseWithLessons:
    course: Course
    # Every live lesson of the course, by order; lesson_count is its length.
    lessons: list[Lesson]


def too_long(limit: int) -> str:
    return f"Ensure this field has no more than {limit} characters."


class CourseStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"


class OwnedCourse(Protocol):
    """What the access rules need to know about a course (a store row satisfies it)."""

    @property
    def instructor_id(self) -> int: ...

    @property
    def status(self) -> str: ...


C = TypeVar("C", bound=OwnedCourse)
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


def course_code(number: int) -> str:
    """COURSE-0001 .. COURSE-9999, then COURSE-10000 and so on (never truncated)."""
    if number < 1:
        raise ValueError("course numbers start at 1")
    return f"COURSE-{number:04d}"


# --- who sees and changes what -----------------------------------------------------------------


def ensure_can_create_course(caller: Claims) -> None:
    if not caller.is_instructor:
        raise PermissionDenied(ONLY_INSTRUCTORS)


def is_visible(course: OwnedCourse, caller: Claims) -> bool:
    """A course is visible to its own instructor in any status, and to everyone once published.
    Administrators see every course in any status (to support instructors); reading is all
    they may do, since `ensure_owner` still refuses them every change."""
    return (
        course.instructor_id == caller.user_id
        or course.status == CourseStatus.PUBLISHED
        or caller.is_admin
    )


def visible(course: C | None, caller: Claims, not_found: str = COURSE_NOT_FOUND) -> C:
    """The course, or NOT_FOUND when it does not exist or the caller may not see it.

    Hidden and missing look the same, so nobody learns that someone else's draft exists.
    """
    if course is None or not is_visible(course, caller):
        raise NotFound(not_found)
    return course


def is_lesson_readable(course: OwnedCourse, caller: Claims) -> bool:
    """A lesson is readable by id exactly when its course is visible: published lesson content
    is public to every signed-in user (the course nests it anyway), on REST and gRPC alike.
    Lesson lists are narrower views of what is readable (see `list_scope`)."""
    return is_visible(course, caller)


def ensure_owner(course: OwnedCourse, caller: Claims) -> None:
    """Only a course's instructor changes it or its lessons (checked after `visible`)."""
    if course.instructor_id != caller.user_id:
        raise PermissionDenied(NOT_OWNER)


def ensure_publishable(course: OwnedCourse) -> None:
    if course.status != CourseStatus.DRAFT:
        raise FailedPrecondition.on_field("status", NOT_A_DRAFT.format(status=course.status))


def ensure_enrollable(course: OwnedCourse) -> None:
    if course.status != CourseStatus.PUBLISHED:
        raise FailedPrecondition.on_field("course", NOT_PUBLISHED)


@dataclass(frozen=True)
class ListScope:
    """Which courses a caller's listings (of courses and of lessons) draw from.

    Instructors list their own courses (any status), administrators every course; everyone else
    lists published courses, narrowed by the caller's `course_ids` filter (the gateway passes a
    student's enrolled courses there). A list never holds a lesson that `is_lesson_readable` would refuse.
    """

    instructor_id: int | None
    published_only: bool


def list_scope(caller: Claims) -> ListScope:
    if caller.is_instructor:
        return ListScope(instructor_id=caller.user_id, published_only=False)
    if caller.is_admin:
        return ListScope(instructor_id=None, published_only=False)
    return ListScope(instructor_id=None, published_only=True)


# --- field validation --------------------------------------------------------------------------


def _clean_text(
    errors: FieldErrorCollector, field: str, value: str, limit: int, *, multiline: bool = False
) -> str:
    """Single-line text is stripped; multi-line text (lesson content) keeps its whitespace,
    it may be formatted."""
    cleaned = value if multiline else value.strip()
    if "\x00" in value:
        errors.add(field, NUL)  # PostgreSQL text cannot hold NUL
    elif not cleaned.strip():
        errors.add(field, BLANK)
    elif len(cleaned) > limit:
        errors.add(field, too_long(limit))
    elif problem := text_problem(cleaned, multiline=multiline):
        errors.add(field, problem)
    return cleaned


def _clean_order(errors: FieldErrorCollector, field: str, value: int) -> int:
    if value < ORDER_MIN:
        errors.add(field, f"Ensure this value is greater than or equal to {ORDER_MIN}.")
    elif value > ORDER_MAX:
        errors.add(field, f"Ensure this value is less than or equal to {ORDER_MAX}.")
    return value


class FieldRule(Protocol[T_co]):
    """How one writable field is checked: adds its problems to `errors` under `key`, returns
    the cleaned value."""

    def clean(self, errors: FieldErrorCollector, key: str, value: object) -> T_co: ...


@dataclass(frozen=True)
class TextRule:
    """Text of at most `limit` characters, not blank; single-line unless `multiline`."""

    limit: int
    multiline: bool = False

    def clean(self, errors: FieldErrorCollector, key: str, value: object) -> str:
        return _clean_text(errors, key, str(value), self.limit, multiline=self.multiline)


@dataclass(frozen=True)
class OrderRule:
    """A lesson's 1-based position (a proto int32)."""

    def clean(self, errors: FieldErrorCollector, key: str, value: object) -> int:
        return _clean_order(errors, key, int(str(value)))


# The writable fields, each with its rule: the one list the use cases, the servicer and the
# update masks go by. A field added here is validated, maskable and passed through.
COURSE_FIELDS: Mapping[str, FieldRule[str]] = {
    "title": TextRule(COURSE_TITLE_MAX),
    "short_description": TextRule(SHORT_DESCRIPTION_MAX),
}
LESSON_FIELDS: Mapping[str, FieldRule[str | int]] = {
    "title": TextRule(LESSON_TITLE_MAX),
    "content": TextRule(LESSON_CONTENT_MAX, multiline=True),
    "order": OrderRule(),
}
UNKNOWN_FIELD = "Unknown field."


def _collect_fields(
    errors: FieldErrorCollector,
    rules: Mapping[str, FieldRule[T]],
    values: Mapping[str, object],
    fields: Iterable[str],
    prefix: str = "",
) -> dict[str, T]:
    """The named fields cleaned by their rules; a name with no rule is an error, never given
    some other field's limit."""
    cleaned: dict[str, T] = {}
    for name in fields:
        rule = rules.get(name)
        if rule is None:
            errors.add(f"{prefix}{name}", UNKNOWN_FIELD)
            continue
        cleaned[name] = rule.clean(errors, f"{prefix}{name}", values[name])
    return cleaned


def clean_course_fields(values: Mapping[str, str], fields: Iterable[str]) -> dict[str, str]:
    """Validate the named course fields (all problems at once); returns their cleaned values."""
    errors = FieldErrorCollector()
    cleaned = _collect_fields(errors, COURSE_FIELDS, values, fields)
    errors.raise_if_any()
    return cleaned


def clean_lesson_fields(
    values: Mapping[str, str | int], fields: Iterable[str]
) -> dict[str, str | int]:
    errors = FieldErrorCollector()
    cleaned = _collect_fields(errors, LESSON_FIELDS, values, fields)
    errors.raise_if_any()
    return cleaned


@dataclass(frozen=True)
class NewLesson:
    title: str
    content: str
    order: int


def clean_new_lesson(title: str, content: str, order: int) -> NewLesson:
    cleaned = clean_lesson_fields(
        {"title": title, "content": content, "order": order}, LESSON_FIELDS
    )
    return NewLesson(str(cleaned["title"]), str(cleaned["content"]), int(cleaned["order"]))


def clean_new_lessons(lessons: Sequence[NewLesson]) -> list[NewLesson]:
    """A bulk request: not empty, not too long, every item valid, no order twice."""
    errors = FieldErrorCollector()
    if not lessons:
        errors.add("lessons", "This list may not be empty.")
    elif len(lessons) > MAX_BULK_LESSONS:
        errors.add("lessons", f"Ensure this list has no more than {MAX_BULK_LESSONS} items.")
    errors.raise_if_any()
    cleaned: list[NewLesson] = []
    for index, lesson in enumerate(lessons):
        values = _collect_fields(
            errors,
            LESSON_FIELDS,
            {"title": lesson.title, "content": lesson.content, "order": lesson.order},
            LESSON_FIELDS,
            prefix=f"lessons.{index}.",
        )
        cleaned.append(
            NewLesson(str(values["title"]), str(values["content"]), int(values["order"]))
        )
    repeated = sorted(
        order for order, seen in Counter(x.order for x in cleaned).items() if seen > 1
    )
    for order in repeated:
        errors.add("lessons", f"Order {order} appears more than once in the request.")
    errors.raise_if_any()
    return cleaned


def orders_taken(orders: Iterable[int]) -> FailedPrecondition:
    """The error for a bulk request whose orders are already used in the course."""
    return FailedPrecondition(
        None,
        {
            "lessons": [
                f"Order {order} is already taken in this course." for order in sorted(orders)
            ]
        },
    )


def order_taken(field: str = "order") -> DomainError:
    return FailedPrecondition.on_field(field, ORDER_TAKEN)


def parse_update_mask(paths: Sequence[str], allowed: Iterable[str]) -> tuple[str, ...]:
    """The fields an update names, in a stable order; an unknown path is INVALID_ARGUMENT."""
    allowed = tuple(allowed)
    unknown = sorted(set(paths) - set(allowed))
    if unknown:
        raise InvalidArgument.on_field(
            "update_mask",
            f"Unknown field(s) {', '.join(unknown)}; updatable: {', '.join(allowed)}.",
        )
    return tuple(name for name in allowed if name in paths)


# --- paging and filters ------------------------------------------------------------------------


def clean_id_filter(ids: Sequence[int], field: str) -> tuple[int, ...] | None:
    """A `course_ids` filter: None when absent, else distinct positive ids (at most 1000)."""
    if not ids:
        return None
    if len(ids) > MAX_FILTER_IDS:
        raise InvalidArgument.on_field(field, f"At most {MAX_FILTER_IDS} ids are allowed.")
    return tuple(sorted({value for value in ids if value > 0}))


# --- search and ordering of the course list ----------------------------------------------------

COURSE_ORDERINGS = ("title", "-title", "created_at", "-created_at", "code", "-code")
SEARCH_MAX = 200
BAD_ORDERING = "Unknown ordering {value!r}; use one of: {allowed}."


@dataclass(frozen=True)
class CourseQuery:
    """What a course list asks for beyond the caller's scope: full-text `search` (empty: none),
    an `ordering` key and direction (None: newest first, or by relevance when searching), and
    one instructor's courses only."""

    search: str = ""
    ordering: str | None = None
    descending: bool = False
    instructor_id: int | None = None


def clean_course_query(search: str, ordering: str, instructor_id: int) -> CourseQuery:
    errors = FieldErrorCollector()
    search = search.strip()
    problem = text_problem(search)
    if problem:
        errors.add("search", problem)
    elif len(search) > SEARCH_MAX:
        errors.add("search", too_long(SEARCH_MAX))
    ordering = ordering.strip()
    if ordering and ordering not in COURSE_ORDERINGS:
        errors.add(
            "ordering", BAD_ORDERING.format(value=ordering, allowed=", ".join(COURSE_ORDERINGS))
        )
    if instructor_id < 0:
        errors.add("instructor", "Ensure this value is greater than or equal to 1.")
    errors.raise_if_any()
    return CourseQuery(
        search=search,
        ordering=ordering.lstrip("-") or None,
        descending=ordering.startswith("-"),
        instructor_id=instructor_id or None,
    )
