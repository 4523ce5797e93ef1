"""The query parameters of `GET /api/courses/` beyond paging: `?search=`, `?ordering=`,
`?instructor=`. They go to the catalog as they are; it validates them (a bad ordering is its
INVALID_ARGUMENT on `ordering`, a 400 here) and runs the search."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query

from gateway.fields import INT64_MAX

SEARCH_HELP = (
    "Words of the title and short description (PostgreSQL full-text search, `english`: "
    "stemmed, so `cook` finds 'Cooking basics'); results by relevance unless ordering is given"
)
ORDERING_HELP = "title, -title, created_at, -created_at, code or -code (default: newest first)"


def course_search(
    search: Annotated[str, Query(max_length=200, description=SEARCH_HELP)] = "",
    ordering: Annotated[str, Query(description=ORDERING_HELP)] = "",
    instructor: Annotated[
        int | None, Query(ge=1, le=INT64_MAX, description="Only this instructor's courses")
    ] = None,
) -> dict[str, Any]:
    """The ListCoursesRequest fields these parameters set."""
    return {"search": search, "ordering": ordering, "instructor_id": instructor or 0}


CourseSearch = Annotated[dict[str, Any], Depends(course_search)]
