"""Administrators (issue #14 item 6) over real HTTP and direct gRPC: registration never offers
the role, the user routes answer admins only (every other caller 403 or 401), an admin cannot
deactivate themselves, and admins read every course (drafts included) but change none."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc

from libs.grpc_errors import decode_rpc_error
from libs.settings import Settings
from tests.conftest import TEST_PASSWORD, User, assert_error_body, register_and_login, unique_email
from tests.revocation_support import admin_user, bearer, grpc_status

USER_FIELDS = {"id", "email", "full_name", "role", "is_active", "date_joined", "last_login"}


@pytest.fixture
async def admin(client: httpx.AsyncClient, settings: Settings) -> User:
    return await admin_user(client, settings)


@pytest.fixture
async def identity(
    services: dict[str, str],
) -> AsyncIterator[identity_pb2_grpc.IdentityServiceStub]:
    async with grpc.aio.insecure_channel(services["identity"]) as channel:
        yield identity_pb2_grpc.IdentityServiceStub(channel)


@pytest.fixture
async def catalog(services: dict[str, str]) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    async with grpc.aio.insecure_channel(services["catalog"]) as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


# Registration -----------------------------------------------------------------------------------


async def test_registration_does_not_offer_the_admin_role(client: httpx.AsyncClient) -> None:
    body = {
        "email": unique_email("would-be-admin"),
        "full_name": "Mallory",
        "role": "Admin",
        "password": TEST_PASSWORD,
        "password_confirm": TEST_PASSWORD,
    }
    assert_error_body(await client.post("/api/register/", json=body), 400, "role")
    login = await client.post(
        "/api/auth/login/", json={"email": body["email"], "password": TEST_PASSWORD}
    )
    assert login.status_code == 401


async def test_grpc_register_refuses_role_admin(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.Register(
            identity_pb2.RegisterRequest(
                email=unique_email("grpc-admin"),
                full_name="Mallory",
                role=identity_pb2.ROLE_ADMIN,
                password=TEST_PASSWORD,
                password_confirm=TEST_PASSWORD,
            ),
            timeout=5,
        )
    failure = decode_rpc_error(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(failure.field_errors) == {"role"}


# Who may use the user routes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/users/", None),
        ("GET", "/api/users/{id}/", None),
        ("PATCH", "/api/users/{id}/", {"is_active": False}),
    ],
)
async def test_user_routes_are_for_admins_only(
    client: httpx.AsyncClient, method: str, path: str, body: dict | None
) -> None:
    for role in ("Student", "Instructor"):
        caller = await register_and_login(client, role)
        # Even about themselves: reading yourself is /api/users/me/.
        url = path.format(id=caller.id)
        answer = await client.request(method, url, json=body, headers=caller.headers)
        assert_error_body(answer, 403)
        me = await client.get("/api/users/me/", headers=caller.headers)
        assert me.json()["is_active"] is True
    assert_error_body(await client.request(method, path.format(id=1), json=body), 401)


async def test_grpc_user_administration_is_permission_denied_for_others(
    client: httpx.AsyncClient, identity: identity_pb2_grpc.IdentityServiceStub
) -> None:
    student = await register_and_login(client, "Student")
    victim = await register_and_login(client, "Student")
    metadata = bearer(student.access)
    calls = [
        identity.ListUsers(identity_pb2.ListUsersRequest(), metadata=metadata),
        identity.GetUser(identity_pb2.GetUserRequest(user_id=victim.id), metadata=metadata),
        identity.SetUserActive(
            identity_pb2.SetUserActiveRequest(user_id=victim.id, is_active=False),
            metadata=metadata,
        ),
    ]
    for call in calls:
        assert await grpc_status(call) == grpc.StatusCode.PERMISSION_DENIED
    me = await client.get("/api/users/me/", headers=victim.headers)
    assert me.status_code == 200 and me.json()["is_active"] is True


# Listing and reading ---------------------------------------------------------------------------


async def test_admin_lists_users_with_search_role_and_is_active_filters(
    client: httpx.AsyncClient, admin: User
) -> None:
    tag = uuid.uuid4().hex[:8]
    student = await register_and_login(client, "Student", full_name=f"Sam {tag}")
    teacher = await register_and_login(client, "Instructor", full_name=f"Tess {tag}")
    await client.patch(
        f"/api/users/{student.id}/", json={"is_active": False}, headers=admin.headers
    )

    page = await client.get("/api/users/", params={"search": tag.upper()}, headers=admin.headers)
    assert page.status_code == 200, page.text
    body = page.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert [user["id"] for user in body["results"]] == [teacher.id, student.id]  # newest first
    listed = body["results"][0]
    assert set(listed) == USER_FIELDS
    assert listed["email"] == teacher.email
    assert listed["role"] == "Instructor" and listed["is_active"] is True
    assert listed["date_joined"].endswith("Z") and listed["last_login"].endswith("Z")

    async def ids(**params: str) -> list[int]:
        answer = await client.get(
            "/api/users/", params={"search": tag, **params}, headers=admin.headers
        )
        assert answer.status_code == 200, answer.text
        return [user["id"] for user in answer.json()["results"]]

    assert await ids(role="Student") == [student.id]
    assert await ids(role="Instructor") == [teacher.id]
    assert await ids(role="Admin") == []
    assert await ids(is_active="false") == [student.id]
    assert await ids(is_active="true") == [teacher.id]
    assert await ids(search=teacher.email) == [teacher.id]  # by email too
    assert await ids(search="%") == []  # LIKE wildcards are literal

    assert (await ids(role="Admin", search=admin.email)) == [admin.id]
    assert_error_body(
        await client.get("/api/users/", params={"role": "Root"}, headers=admin.headers), 400, "role"
    )
    assert_error_body(
        await client.get("/api/users/", params={"is_active": "maybe"}, headers=admin.headers),
        400,
        "is_active",
    )
    assert_error_body(
        await client.get("/api/users/", params={"search": tag, "page": 2}, headers=admin.headers),
        404,
    )


async def test_admin_pages_through_users(client: httpx.AsyncClient, admin: User) -> None:
    tag = uuid.uuid4().hex[:8]
    made = [(await register_and_login(client, full_name=f"Paged {tag} {n}")).id for n in range(3)]
    first = await client.get(
        "/api/users/", params={"search": tag, "page_size": 2}, headers=admin.headers
    )
    assert first.json()["count"] == 3 and first.json()["previous"] is None
    second = await client.get(first.json()["next"], headers=admin.headers)
    assert second.status_code == 200 and second.json()["next"] is None
    seen = [user["id"] for page in (first, second) for user in page.json()["results"]]
    assert seen == made[::-1]


async def test_admin_reads_one_user(client: httpx.AsyncClient, admin: User) -> None:
    student = await register_and_login(client, "Student")
    answer = await client.get(f"/api/users/{student.id}/", headers=admin.headers)
    assert answer.status_code == 200, answer.text
    user = answer.json()
    assert set(user) == USER_FIELDS
    assert (user["id"], user["email"], user["role"]) == (student.id, student.email, "Student")
    assert_error_body(await client.get("/api/users/999999999/", headers=admin.headers), 404)
    assert_error_body(await client.get("/api/users/abc/", headers=admin.headers), 404)


async def test_a_user_who_never_logged_in_has_no_last_login(
    client: httpx.AsyncClient, admin: User
) -> None:
    body = {
        "email": unique_email("never"),
        "full_name": "Never Seen",
        "role": "Student",
        "password": TEST_PASSWORD,
        "password_confirm": TEST_PASSWORD,
    }
    created = (await client.post("/api/register/", json=body)).json()
    user = (await client.get(f"/api/users/{created['id']}/", headers=admin.headers)).json()
    assert user["last_login"] is None


# Deactivation ----------------------------------------------------------------------------------


async def test_patch_is_active_answers_the_user(client: httpx.AsyncClient, admin: User) -> None:
    student = await register_and_login(client, "Student")
    url = f"/api/users/{student.id}/"
    answer = await client.patch(url, json={"is_active": False}, headers=admin.headers)
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == USER_FIELDS
    assert answer.json()["is_active"] is False
    # Read-only fields may be echoed unchanged (clients PATCH what they GET) ...
    echoed = {**answer.json(), "is_active": True}
    again = await client.patch(url, json=echoed, headers=admin.headers)
    assert again.status_code == 200, again.text
    assert again.json()["is_active"] is True
    # ... an empty body changes nothing.
    assert (await client.patch(url, json={}, headers=admin.headers)).json()["is_active"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"is_active": "nope"}, "is_active"),
        ({"is_active": None}, "is_active"),
        ({"email": "other@example.com"}, "email"),
        ({"role": "Admin"}, "role"),
        ({"is_activ": False}, "is_activ"),
    ],
)
async def test_patch_refuses_bad_bodies(
    client: httpx.AsyncClient, admin: User, body: dict, field: str
) -> None:
    student = await register_and_login(client, "Student")
    answer = await client.patch(f"/api/users/{student.id}/", json=body, headers=admin.headers)
    assert_error_body(answer, 400, field)
    user = (await client.get(f"/api/users/{student.id}/", headers=admin.headers)).json()
    assert (user["is_active"], user["role"], user["email"]) == (True, "Student", student.email)


async def test_admin_cannot_deactivate_themselves(client: httpx.AsyncClient, admin: User) -> None:
    answer = await client.patch(
        f"/api/users/{admin.id}/", json={"is_active": False}, headers=admin.headers
    )
    assert_error_body(answer, 400, "is_active")
    me = await client.get("/api/users/me/", headers=admin.headers)
    assert me.status_code == 200 and me.json()["is_active"] is True
    # Re-activating yourself (a no-op) is fine.
    answer = await client.patch(
        f"/api/users/{admin.id}/", json={"is_active": True}, headers=admin.headers
    )
    assert answer.status_code == 200


async def test_patch_of_an_unknown_user_is_404(client: httpx.AsyncClient, admin: User) -> None:
    answer = await client.patch(
        "/api/users/999999999/", json={"is_active": False}, headers=admin.headers
    )
    assert_error_body(answer, 404)


async def test_users_me_does_not_answer_a_deactivated_user(
    client: httpx.AsyncClient, admin: User
) -> None:
    student = await register_and_login(client, "Student")
    await client.patch(
        f"/api/users/{student.id}/", json={"is_active": False}, headers=admin.headers
    )
    assert_error_body(await client.get("/api/users/me/", headers=student.headers), 401)


# Courses ---------------------------------------------------------------------------------------


async def test_admins_read_every_course_but_change_none(
    client: httpx.AsyncClient, admin: User, catalog: catalog_pb2_grpc.CatalogServiceStub
) -> None:
    teacher = await register_and_login(client, "Instructor")
    student = await register_and_login(client, "Student")
    draft = await client.post(
        "/api/courses/",
        json={"title": "Admin-visible draft", "short_description": "not yet published"},
        headers=teacher.headers,
    )
    assert draft.status_code == 201
    course_id = draft.json()["id"]
    await client.post(
        "/api/lessons/",
        json={"course": course_id, "title": "One", "content": "text", "order": 1},
        headers=teacher.headers,
    )

    read = await client.get(f"/api/courses/{course_id}/", headers=admin.headers)
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "draft"
    assert [lesson["title"] for lesson in read.json()["lessons"]] == ["One"]
    listed = await client.get("/api/courses/", params={"page_size": 100}, headers=admin.headers)
    assert course_id in [course["id"] for course in listed.json()["results"]]
    # The draft stays hidden from everyone else.
    assert_error_body(await client.get(f"/api/courses/{course_id}/", headers=student.headers), 404)
    student_list = await client.get(
        "/api/courses/", params={"page_size": 100}, headers=student.headers
    )
    assert course_id not in [course["id"] for course in student_list.json()["results"]]

    url = f"/api/courses/{course_id}/"
    for method, path, body in [
        ("POST", "/api/courses/", {"title": "t", "short_description": "d"}),
        ("PUT", url, {"title": "Taken over", "short_description": "d"}),
        ("PATCH", url, {"title": "Taken over"}),
        ("DELETE", url, None),
        ("POST", f"{url}publish/", None),
        ("PATCH", f"{url}publish/", None),
        ("POST", "/api/lessons/", {"course": course_id, "title": "x", "content": "y", "order": 2}),
    ]:
        answer = await client.request(method, path, json=body, headers=admin.headers)
        assert_error_body(answer, 403)
    # Direct gRPC: the catalog refuses the admin's changes itself.
    metadata = bearer(admin.access)
    for call in [
        catalog.UpdateCourse(
            catalog_pb2.UpdateCourseRequest(course_id=course_id, title="Taken over"),
            metadata=metadata,
        ),
        catalog.PublishCourse(
            catalog_pb2.PublishCourseRequest(course_id=course_id), metadata=metadata
        ),
        catalog.DeleteCourse(
            catalog_pb2.DeleteCourseRequest(course_id=course_id), metadata=metadata
        ),
    ]:
        assert await grpc_status(call) == grpc.StatusCode.PERMISSION_DENIED
    after = (await client.get(url, headers=admin.headers)).json()
    assert (after["title"], after["status"]) == ("Admin-visible draft", "draft")
