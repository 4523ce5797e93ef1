"""Catalog rules without a server: codes, visibility, ownership, publishing, validation, paging."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from libs.claims import Claims
from libs.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from libs.paging import PageRequest, page_request
from services.catalog import domain
from services.catalog.domain import CourseStatus, NewLesson
from services.catalog.usecases import instructor_name

pytestmark = pytest.mark.unit


def claims(user_id: int, role: str, full_name: str = "", email: str = "") -> Claims:
    return Claims(
        user_id=user_id,
        typ="access",
        jti="jti",
        expires_at=datetime.now(UTC),
        role=role,
        full_name=full_name,
        email=email,
    )


@dataclass(frozen=True)
class Course:
    instructor_id: int
    status: str


OWNER = claims(1, "Instructor")
OTHER_INSTRUCTOR = claims(2, "Instructor")
STUDENT = claims(3, "Student")
DRAFT = Course(instructor_id=1, status=CourseStatus.DRAFT)
PUBLISHED = Course(instructor_id=1, status=CourseStatus.PUBLISHED)


@pytest.mark.parametrize(
    ("number", "code"),
    [(1, "COURSE-0001"), (42, "COURSE-0042"), (9999, "COURSE-9999"), (10000, "COURSE-10000")],
)
def test_course_code_is_zero_padded_and_grows_without_truncation(number: int, code: str) -> None:
    assert domain.course_code(number) == code


def test_course_code_rejects_non_positive_numbers() -> None:
    with pytest.raises(ValueError):
        domain.course_code(0)


def test_only_instructors_create_courses() -> None:
    domain.ensure_can_create_course(OWNER)
    with pytest.raises(PermissionDenied):
        domain.ensure_can_create_course(STUDENT)


@pytest.mark.parametrize(
    ("course", "caller", "seen"),
    [
        (DRAFT, OWNER, True),
        (DRAFT, OTHER_INSTRUCTOR, False),
        (DRAFT, STUDENT, False),
        (PUBLISHED, OWNER, True),
        (PUBLISHED, OTHER_INSTRUCTOR, True),
        (PUBLISHED, STUDENT, True),
    ],
)
def test_visibility(course: Course, caller: Claims, seen: bool) -> None:
    assert domain.is_visible(course, caller) is seen


def test_hidden_and_missing_courses_are_the_same_not_found() -> None:
    with pytest.raises(NotFound) as hidden:
        domain.visible(DRAFT, STUDENT)
    with pytest.raises(NotFound) as missing:
        domain.visible(None, STUDENT)
    assert hidden.value.message == missing.value.message
    assert domain.visible(PUBLISHED, STUDENT) is PUBLISHED


def test_only_the_owner_changes_a_course() -> None:
    domain.ensure_owner(DRAFT, OWNER)
    for caller in (OTHER_INSTRUCTOR, STUDENT):
        with pytest.raises(PermissionDenied):
            domain.ensure_owner(PUBLISHED, caller)


def test_only_drafts_are_published() -> None:
    domain.ensure_publishable(DRAFT)
    with pytest.raises(FailedPrecondition) as caught:
        domain.ensure_publishable(PUBLISHED)
    assert list(caught.value.field_errors) == ["status"]


def test_only_published_courses_are_enrollable() -> None:
    domain.ensure_enrollable(PUBLISHED)
    with pytest.raises(FailedPrecondition) as caught:
        domain.ensure_enrollable(DRAFT)
    assert list(caught.value.field_errors) == ["course"]


def test_list_scope_follows_the_role() -> None:
    assert domain.list_scope(OWNER) == domain.ListScope(instructor_id=1, published_only=False)
    assert domain.list_scope(STUDENT) == domain.ListScope(instructor_id=None, published_only=True)


def test_course_fields_are_stripped_and_bounded() -> None:
    cleaned = domain.clean_course_fields(
        {"title": "  Rust  ", "short_description": " Learn it "}, domain.COURSE_FIELDS
    )
    assert cleaned == {"title": "Rust", "short_description": "Learn it"}
    with pytest.raises(InvalidArgument) as caught:
        domain.clean_course_fields(
            {"title": "x" * 256, "short_description": "   "}, domain.COURSE_FIELDS
        )
    assert set(caught.value.field_errors) == {"title", "short_description"}
    domain.clean_course_fields({"title": "x" * 255, "short_description": "y" * 500}, ("title",))


def test_only_the_named_fields_are_validated() -> None:
    assert domain.clean_course_fields({"title": "ok", "short_description": ""}, ("title",)) == {
        "title": "ok"
    }


def test_nul_characters_are_refused() -> None:
    with pytest.raises(InvalidArgument) as caught:
        domain.clean_new_lesson("a\x00b", "content", 1)
    assert caught.value.field_errors == {"title": [domain.NUL]}


@pytest.mark.parametrize("order", [0, -1, domain.ORDER_MAX + 1])
def test_lesson_order_bounds(order: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        domain.clean_new_lesson("title", "content", order)
    assert list(caught.value.field_errors) == ["order"]


def test_lesson_content_keeps_its_whitespace_but_may_not_be_blank() -> None:
    lesson = domain.clean_new_lesson(" Intro ", "  indented\n", 1)
    assert lesson == NewLesson("Intro", "  indented\n", 1)
    with pytest.raises(InvalidArgument):
        domain.clean_new_lesson("Intro", " \n ", 1)


def test_bulk_needs_at_least_one_lesson() -> None:
    with pytest.raises(InvalidArgument) as caught:
        domain.clean_new_lessons([])
    assert list(caught.value.field_errors) == ["lessons"]


def test_bulk_has_a_size_limit() -> None:
    lessons = [NewLesson("t", "c", i + 1) for i in range(domain.MAX_BULK_LESSONS + 1)]
    with pytest.raises(InvalidArgument):
        domain.clean_new_lessons(lessons)


def test_bulk_names_repeated_orders() -> None:
    lessons = [NewLesson("a", "c", 1), NewLesson("b", "c", 2), NewLesson("c", "c", 2)]
    with pytest.raises(InvalidArgument) as caught:
        domain.clean_new_lessons(lessons)
    assert caught.value.field_errors == {
        "lessons": ["Order 2 appears more than once in the request."]
    }


def test_bulk_item_errors_carry_the_item_index() -> None:
    lessons = [NewLesson("ok", "c", 1), NewLesson("", "c", 0)]
    with pytest.raises(InvalidArgument) as caught:
        domain.clean_new_lessons(lessons)
    assert set(caught.value.field_errors) == {"lessons.1.title", "lessons.1.order"}


def test_orders_taken_lists_every_order() -> None:
    error = domain.orders_taken([3, 1])
    assert isinstance(error, FailedPrecondition)
    assert error.field_errors == {
        "lessons": [
            "Order 1 is already taken in this course.",
            "Order 3 is already taken in this course.",
        ]
    }


def test_update_mask_accepts_known_fields_in_a_stable_order() -> None:
    assert domain.parse_update_mask(["order", "title"], domain.LESSON_FIELDS) == ("title", "order")
    assert domain.parse_update_mask([], domain.COURSE_FIELDS) == ()
    with pytest.raises(InvalidArgument) as caught:
        domain.parse_update_mask(["status"], domain.COURSE_FIELDS)
    assert list(caught.value.field_errors) == ["update_mask"]


@pytest.mark.parametrize(
    ("page", "size", "offset", "limit"),
    [(0, 0, 0, 20), (1, 20, 0, 20), (3, 10, 20, 10), (2, 100, 100, 100)],
)
def test_page_request(page: int, size: int, offset: int, limit: int) -> None:
    assert page_request(page, size) == PageRequest(offset=offset, limit=limit)


@pytest.mark.parametrize(("page", "size", "field"), [(-1, 10, "page"), (1, 101, "page_size")])
def test_page_request_bounds(page: int, size: int, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        page_request(page, size)
    assert list(caught.value.field_errors) == [field]


def test_id_filter() -> None:
    assert domain.clean_id_filter([], "course_ids") is None
    assert domain.clean_id_filter([3, 1, 3, 0, -2], "course_ids") == (1, 3)
    # Only unusable ids: a filter that matches nothing, not "no filter".
    assert domain.clean_id_filter([0], "course_ids") == ()
    with pytest.raises(InvalidArgument):
        domain.clean_id_filter(list(range(1, domain.MAX_FILTER_IDS + 2)), "course_ids")


def test_instructor_name_is_the_token_name_or_the_email() -> None:
    assert instructor_name(claims(1, "Instructor", full_name=" Ada Lovelace ")) == "Ada Lovelace"
    assert instructor_name(claims(1, "Instructor", email="ada@example.com")) == "ada@example.com"


def test_a_field_with_no_rule_is_an_error_not_the_description_limit() -> None:
    with pytest.raises(InvalidArgument) as caught:
        domain.clean_course_fields({"title": "ok", "language": "x"}, ("title", "language"))
    assert caught.value.field_errors == {"language": [domain.UNKNOWN_FIELD]}
    with pytest.raises(InvalidArgument) as caught:
        domain.clean_lesson_fields({"colour": "red"}, ("colour",))
    assert caught.value.field_errors == {"colour": [domain.UNKNOWN_FIELD]}


@pytest.mark.parametrize(("name", "rule"), [*domain.COURSE_FIELDS.items()])
def test_each_course_field_is_held_to_its_own_limit(name: str, rule: domain.TextRule) -> None:
    domain.clean_course_fields({name: "x" * rule.limit}, (name,))
    with pytest.raises(InvalidArgument) as caught:
        domain.clean_course_fields({name: "x" * (rule.limit + 1)}, (name,))
    assert caught.value.field_errors == {name: [domain.too_long(rule.limit)]}
