"""Learning rules: who may learn, the order lessons complete in, and how progress is counted.

Pure functions over plain values; no I/O. The use cases load rows, ask these functions, and
write what they decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from libs.claims import Claims
from libs.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

STUDENTS_ONLY = "Only students can perform this action."
ALREADY_ENROLLED = "You are already enrolled in this course."
COURSE_REQUIRED = "This field is required."
ENROLLMENT_NOT_FOUND = "Enrollment not found."
PROGRESS_NOT_FOUND = "Progress not found."
ONE_WAY = "A completed lesson cannot be marked as not completed."
COURSE_GONE = "This lesson's course is no longer available."


_HUNDRED = Decimal(100)
_CENTS = Decimal("0.01")


@dataclass(frozen=True)
class CatalogLesson:
    """A lesson as the catalog describes it now."""

    id: int
    title: str
    order: int


@dataclass(frozen=True)
class CatalogCourse:
    """A course as the catalog describes it now: its title and its live lessons."""

    id: int
    title: str
    lessons: tuple[CatalogLesson, ...]
    # The catalog's version of the course (+1 on every change of it or its lessons); 0: unknown.
    version: int = 0


@dataclass(frozen=True)
class LessonState:
    """One lesson of an enrollment as far as progress goes."""

    progress_id: int
    lesson_id: int
    title: str
    order: int
    completed: bool


@dataclass(frozen=True)
class Summary:
    total_lessons: int
    completed_lessons: int
    completion_percentage: float

    @property
    def all_done(self) -> bool:
        """Every lesson that counts is complete (an enrollment with no lessons is never done)."""
        return self.total_lessons > 0 and self.completed_lessons == self.total_lessons


@dataclass(frozen=True)
class Enrollment:
    id: int
    student_id: int
    student_name: str
    course_id: int
    course_title: str
    enrolled_at: datetime
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # Set while the student is withdrawn (the row and its progress are kept).
    withdrawn_at: datetime | None = None


@dataclass(frozen=True)
class Progress:
    id: int
    enrollment_id: int
    lesson_id: int
    lesson_title: str
    lesson_order: int
    completed: bool
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime


def require_student(claims: Claims) -> None:
    if not claims.is_student:
        raise PermissionDenied(STUDENTS_ONLY)


def require_course_id(course_id: int) -> int:
    if course_id <= 0:
        raise InvalidArgument.on_field("course", COURSE_REQUIRED)
    return course_id


def require_id(value: int, what: str) -> int:
    """Ids are positive; anything else names no row (and is answered like an unknown one)."""
    if value <= 0:
        raise NotFound(what)
    return value


def completion_percentage(completed: int, total: int) -> float:
    """Share of completed lessons, 0..100, rounded half-up to 2 decimals (1 of 3 -> 33.33)."""
    if total <= 0:
        return 0.0
    completed = min(max(completed, 0), total)
    share = (Decimal(completed) * _HUNDRED / Decimal(total)).quantize(_CENTS, ROUND_HALF_UP)
    return float(share)


def summarize(lessons: Iterable[LessonState]) -> Summary:
    states = list(lessons)
    done = sum(1 for lesson in states if lesson.completed)
    return Summary(
        total_lessons=len(states),
        completed_lessons=done,
        completion_percentage=completion_percentage(done, len(states)),
    )


def is_reconciled(course: CatalogCourse, course_title: str, lessons: Sequence[LessonState]) -> bool:
    """Whether an open enrollment's stored figures can be answered as they are: its course title
    and the lessons that count (ids, titles, orders) are exactly the catalog's current ones, and
    they do not leave it finished but still open (every lesson done: it is due for completion).
    Anything else needs the locked reconciliation, which is the only place that writes."""
    if course_title != course.title:
        return False
    current = {lesson.id: (lesson.title, lesson.order) for lesson in course.lessons}
    if len(lessons) != len(current):
        return False
    # Stored lesson ids are unique per enrollment, so same size + every one matching = same set.
    if any(current.get(lesson.lesson_id) != (lesson.title, lesson.order) for lesson in lessons):
        return False
    return not summarize(lessons).all_done


def first_open_before(lessons: Sequence[LessonState], target: LessonState) -> LessonState | None:
    """The lowest-ordered open lesson that comes before `target`, if any."""
    earlier = [
        lesson
        for lesson in lessons
        if lesson.order < target.order and not lesson.completed and lesson != target
    ]
    return min(earlier, key=lambda lesson: (lesson.order, lesson.lesson_id), default=None)


def sequence_message(blocker: LessonState) -> str:
    return (
        f"You must complete lesson {blocker.order} ({blocker.title}) before completing this lesson."
    )


def check_can_complete(lessons: Sequence[LessonState], target: LessonState) -> None:
    """Lessons complete in order: every lower-ordered lesson must be complete first."""
    blocker = first_open_before(lessons, target)
    if blocker is not None:
        raise FailedPrecondition.on_field("lesson", sequence_message(blocker))


def after_completing(lessons: Sequence[LessonState], target: LessonState) -> list[LessonState]:
    """The enrollment's lessons as they will be once `target` is complete."""
    return [
        LessonState(
            progress_id=lesson.progress_id,
            lesson_id=lesson.lesson_id,
            title=lesson.title,
            order=lesson.order,
            completed=True,
        )
        if lesson.progress_id == target.progress_id
        else lesson
        for lesson in lessons
    ]


def check_completed_change(currently_completed: bool, requested: bool) -> bool:
    """Whether a requested `completed` value asks for a completion. Completion is one-way."""
    if currently_completed and not requested:
        raise FailedPrecondition.on_field("completed", ONE_WAY)
    return requested and not currently_completed


# --- learning's copy of each course's lessons (docs/learning.md "The copy of each course's lessons")


@dataclass(frozen=True)
class LessonCopy:
    """Learning's stored copy of one course's title and lesson list."""

    course_id: int
    # The catalog version the copy reflects (0: nothing copied yet).
    version: int
    # The highest version a CourseChanged event announced; above `version`: the copy is stale.
    latest_version: int
    # The course as copied; None when nothing is copied yet or the course is gone.
    course: CatalogCourse | None
    # The catalog no longer knows the course (deleted, which is final).
    gone: bool
    # When the copy was last confirmed by the catalog (taken before the call was made).
    checked_at: datetime | None


def copy_is_trusted(
    copy: LessonCopy, *, events_seen_since: datetime | None, now: datetime, max_age_s: float
) -> bool:
    """Whether a read may answer from `copy` instead of asking the catalog.

    Only while this process's event reader is healthy (`events_seen_since`: since when it has
    seen every event without interruption; None while it is not), only for a copy the catalog
    confirmed after that moment (events before it may have been missed), that no event has
    overtaken since (a higher announced version, which also covers a gap left by a missed
    event), and that is younger than `max_age_s` (bounds how long a lost last event can go
    unnoticed)."""
    if events_seen_since is None or copy.checked_at is None:
        return False
    if copy.course is None and not copy.gone:
        return False
    if copy.checked_at < events_seen_since:
        return False
    if (now - copy.checked_at).total_seconds() > max_age_s:
        return False
    return copy.version >= copy.latest_version


# --- instructor views (roster, statistics), withdrawal and resume ------------------------------

INSTRUCTORS_ONLY = "Only instructors can perform this action."
BAD_ORDERING = "Unknown ordering {value!r}; use one of: {allowed}."

# Roster orderings: the API's name -> the sort key's name; "-" means descending.
ROSTER_ORDERINGS = (
    "enrolled_at",
    "-enrolled_at",
    "completion_percentage",
    "-completion_percentage",
    "student_name",
    "-student_name",
)
DEFAULT_ROSTER_ORDERING = "-enrolled_at"
ROSTER_SEARCH_MAX = 255


@dataclass(frozen=True)
class Ordering:
    """A validated `?ordering=`: the key and its direction (ties go the same way, by id)."""

    key: str
    descending: bool


@dataclass(frozen=True)
class RosterFilter:
    is_completed: bool | None
    search: str
    ordering: Ordering


@dataclass(frozen=True)
class RosterEntry:
    enrollment: Enrollment
    summary: Summary


@dataclass(frozen=True)
class NextLesson:
    progress_id: int
    lesson_id: int
    title: str
    order: int


@dataclass(frozen=True)
class LessonFunnel:
    lesson_id: int
    title: str
    order: int
    completed: int


@dataclass(frozen=True)
class CourseStats:
    course_id: int
    enrollments: int
    completed: int
    in_progress: int
    completion_rate: float
    average_completion_percentage: float
    lessons: tuple[LessonFunnel, ...]


def require_instructor(claims: Claims) -> None:
    if not claims.is_instructor:
        raise PermissionDenied(INSTRUCTORS_ONLY)


def parse_ordering(value: str, allowed: Sequence[str], default: str) -> Ordering:
    """`value` (empty: `default`) as an Ordering; anything not in `allowed` is INVALID_ARGUMENT
    on field `ordering`."""
    value = value.strip() or default
    if value not in allowed:
        raise InvalidArgument.on_field(
            "ordering", BAD_ORDERING.format(value=value, allowed=", ".join(allowed))
        )
    return Ordering(key=value.lstrip("-"), descending=value.startswith("-"))


def roster_filter(is_completed: bool | None, search: str, ordering: str) -> RosterFilter:
    search = search.strip()
    if len(search) > ROSTER_SEARCH_MAX:
        raise InvalidArgument.on_field(
            "search", f"Ensure this field has no more than {ROSTER_SEARCH_MAX} characters."
        )
    return RosterFilter(
        is_completed=is_completed,
        search=search,
        ordering=parse_ordering(ordering, ROSTER_ORDERINGS, DEFAULT_ROSTER_ORDERING),
    )


def next_lesson(enrollment: Enrollment, lessons: Sequence[LessonState]) -> NextLesson | None:
    """Where the student resumes: the first open lesson in course order; None once the
    enrollment is completed (its figures are final) or when nothing is open."""
    if enrollment.completed_at is not None:
        return None
    first = min(
        (lesson for lesson in lessons if not lesson.completed),
        key=lambda lesson: (lesson.order, lesson.lesson_id),
        default=None,
    )
    if first is None:
        return None
    return NextLesson(
        progress_id=first.progress_id,
        lesson_id=first.lesson_id,
        title=first.title,
        order=first.order,
    )


def summary_of(completed: int, total: int) -> Summary:
    return Summary(
        total_lessons=total,
        completed_lessons=completed,
        completion_percentage=completion_percentage(completed, total),
    )


def rounded(value: Decimal | float | int) -> float:
    """A figure rounded half-up to 2 decimals, as every percentage of the API is."""
    return float(Decimal(value).quantize(_CENTS, ROUND_HALF_UP))


def course_stats(
    course: CatalogCourse,
    *,
    enrollments: int,
    completed: int,
    open_completions: int,
    completed_by_lesson: Mapping[int, int],
) -> CourseStats:
    """The statistics of a course from its running counts. A completed enrollment is at 100%;
    an open one at (its completions among the course's current lessons) / (their number), so the
    mean of the percentages is exact from the sum of the open ones' completions
    (`open_completions`), rounded once at the end."""
    lessons = len(course.lessons)
    percentage_sum = Decimal(completed) * _HUNDRED
    if lessons:
        percentage_sum += Decimal(max(open_completions, 0)) * _HUNDRED / lessons
    average = percentage_sum / enrollments if enrollments > 0 else Decimal(0)
    rate = Decimal(completed) * _HUNDRED / enrollments if enrollments > 0 else Decimal(0)
    return CourseStats(
        course_id=course.id,
        enrollments=enrollments,
        completed=completed,
        in_progress=enrollments - completed,
        completion_rate=rounded(rate),
        average_completion_percentage=rounded(average),
        lessons=tuple(
            LessonFunnel(
                lesson_id=lesson.id,
                title=lesson.title,
                order=lesson.order,
                completed=completed_by_lesson.get(lesson.id, 0),
            )
            for lesson in sorted(course.lessons, key=lambda lesson: (lesson.order, lesson.id))
        ),
    )
