"""The Auth rows of CONTRACT.md plus /api/users/me/ and logout, over real HTTP through the gateway
to a real identity server."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import TEST_PASSWORD, User, assert_error_body, register_and_login, unique_email

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def registration(**changes: object) -> dict[str, object]:
    return {
        "email": unique_email("rest"),
        "full_name": "Ada Lovelace",
        "role": "Student",
        "password": TEST_PASSWORD,
        "password_confirm": TEST_PASSWORD,
        **changes,
    }


async def login(client: httpx.AsyncClient, email: str, password: str = TEST_PASSWORD) -> dict:
    response = await client.post("/api/auth/login/", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


# Register ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/register/", "/api/user/register/", "/api/register"])
async def test_register_answers_201_with_the_user(client: httpx.AsyncClient, path: str) -> None:
    body = registration(role="Instructor")
    response = await client.post(path, json=body)
    assert response.status_code == 201, response.text
    user = response.json()
    assert set(user) == {"id", "email", "full_name", "role"}
    assert isinstance(user["id"], int) and user["id"] > 0
    assert user == {
        "id": user["id"],
        "email": body["email"],
        "full_name": "Ada Lovelace",
        "role": "Instructor",
    }


async def test_register_with_a_form_body(client: httpx.AsyncClient) -> None:
    body = registration()
    response = await client.post("/api/user/register", data=body)
    assert response.status_code == 201, response.text
    assert response.json()["email"] == body["email"]


async def test_duplicate_email_is_400_whatever_the_case(client: httpx.AsyncClient) -> None:
    body = registration()
    assert (await client.post("/api/register/", json=body)).status_code == 201
    for email in (body["email"], str(body["email"]).upper(), f"  {body['email']}  "):
        again = await client.post("/api/register/", json={**body, "email": email})
        errors = assert_error_body(again, 400, "email")
        assert errors["message"] == "Validation error"
        assert errors["errors"]["email"] == ["A user with this email already exists."]


async def test_password_mismatch_is_a_non_field_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/register/", json=registration(password_confirm="another-password")
    )
    body = assert_error_body(response, 400, "non_field_errors")
    assert body["errors"] == {"non_field_errors": ["Passwords do not match."]}


async def test_short_password_is_a_password_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/register/", json=registration(password="seven77", password_confirm="seven77")
    )
    body = assert_error_body(response, 400, "password")
    assert set(body["errors"]) == {"password"}


async def test_eight_characters_are_enough(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/register/", json=registration(password="k7#Qm2vX", password_confirm="k7#Qm2vX")
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("field", ["email", "full_name", "role", "password", "password_confirm"])
async def test_missing_field_is_named(client: httpx.AsyncClient, field: str) -> None:
    body = registration()
    del body[field]
    response = await client.post("/api/register/", json=body)
    assert assert_error_body(response, 400, field)["errors"][field] == ["This field is required."]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", ""),
        ("email", ["a@example.com"]),
        ("email", None),
        ("full_name", ""),
        ("full_name", 5),
        ("full_name", "x" * 256),
        ("full_name", "Ada\nLovelace"),
        ("role", "Admin"),
        ("role", "student"),
        ("role", 5),
        ("role", ["Student"]),
        ("password", 12345678),
        ("password", "x" * 129),
    ],
)
async def test_invalid_field_is_named(client: httpx.AsyncClient, field: str, value: object) -> None:
    changes: dict[str, object] = {field: value}
    if field == "password":
        changes["password_confirm"] = value
    response = await client.post("/api/register/", json=registration(**changes))
    assert_error_body(response, 400, field)


async def test_unknown_field_is_named(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/register/", json=registration(is_staff=True))
    body = assert_error_body(response, 400, "is_staff")
    assert set(body["errors"]) == {"is_staff"}


async def test_many_problems_are_reported_together(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/register/",
        json={"email": "bad", "full_name": "", "role": "Student", "password": "x"},
    )
    body = assert_error_body(response, 400)
    assert {"password_confirm"} <= set(body["errors"])


# Login ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["Student", "Instructor"])
async def test_login_answers_tokens_and_authorities(client: httpx.AsyncClient, role: str) -> None:
    body = registration(role=role, full_name="Alan Turing")
    registered = (await client.post("/api/register/", json=body)).json()
    response = await client.post(
        "/api/auth/login/", json={"email": body["email"], "password": TEST_PASSWORD}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert {"access", "refresh", "authorities", "email", "full_name", "role"} <= set(answer)
    assert answer["authorities"] == [role]
    assert answer["role"] == role
    assert answer["email"] == body["email"]
    assert answer["full_name"] == "Alan Turing"
    assert answer["id"] == registered["id"]
    assert answer["access"] != answer["refresh"]


async def test_login_email_is_case_insensitive_and_form_works(client: httpx.AsyncClient) -> None:
    body = registration()
    await client.post("/api/register/", json=body)
    response = await client.post(
        "/api/auth/login",
        data={"email": str(body["email"]).upper(), "password": TEST_PASSWORD},
    )
    assert response.status_code == 200, response.text


async def test_wrong_password_and_unknown_user_get_the_same_401(
    client: httpx.AsyncClient, student: User
) -> None:
    wrong = await client.post(
        "/api/auth/login/", json={"email": student.email, "password": "not-the-password"}
    )
    unknown = await client.post(
        "/api/auth/login/", json={"email": unique_email("ghost"), "password": TEST_PASSWORD}
    )
    for response in (wrong, unknown):
        assert_error_body(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    assert wrong.json() == unknown.json()


async def test_password_is_case_sensitive(client: httpx.AsyncClient, student: User) -> None:
    response = await client.post(
        "/api/auth/login/", json={"email": student.email, "password": TEST_PASSWORD.upper()}
    )
    assert_error_body(response, 401)


@pytest.mark.parametrize("missing", ["email", "password"])
async def test_login_missing_field_is_400(client: httpx.AsyncClient, missing: str) -> None:
    body = {"email": "a@example.com", "password": "whatever-1"}
    del body[missing]
    assert_error_body(await client.post("/api/auth/login/", json=body), 400, missing)


# Refresh ----------------------------------------------------------------------------------------


async def test_refresh_rotates_the_refresh_token(client: httpx.AsyncClient, student: User) -> None:
    response = await client.post("/api/token/refresh/", json={"refresh": student.refresh})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"access", "refresh"}
    assert answer["refresh"] != student.refresh

    me = await client.get("/api/users/me/", headers={"Authorization": f"Bearer {answer['access']}"})
    assert me.status_code == 200 and me.json()["id"] == student.id

    # The rotated-out token is spent; the new one works once.
    assert_error_body(
        await client.post("/api/token/refresh/", json={"refresh": student.refresh}), 401
    )


async def test_refresh_chain_keeps_working(client: httpx.AsyncClient, student: User) -> None:
    refresh = student.refresh
    for _ in range(3):
        response = await client.post("/api/token/refresh", data={"refresh": refresh})
        assert response.status_code == 200, response.text
        refresh = response.json()["refresh"]


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
async def test_refresh_with_an_invalid_token_is_401(client: httpx.AsyncClient, token: str) -> None:
    assert_error_body(await client.post("/api/token/refresh/", json={"refresh": token}), 401)


async def test_refresh_without_the_field_is_400(client: httpx.AsyncClient) -> None:
    assert_error_body(await client.post("/api/token/refresh/", json={}), 400, "refresh")


# Verify -----------------------------------------------------------------------------------------


async def test_verify_accepts_access_and_refresh_tokens(
    client: httpx.AsyncClient, student: User
) -> None:
    for token in (student.access, student.refresh):
        for path in ("/api/token/verify/", "/api/token/verify"):
            response = await client.post(path, json={"token": token})
            assert response.status_code == 200, response.text
            assert response.json() == {}


async def test_verify_form_body(client: httpx.AsyncClient, student: User) -> None:
    response = await client.post("/api/token/verify/", data={"token": student.access})
    assert (response.status_code, response.json()) == (200, {})


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 5000])
async def test_verify_rejects_invalid_tokens(client: httpx.AsyncClient, token: str) -> None:
    assert_error_body(await client.post("/api/token/verify/", json={"token": token}), 401)


async def test_verify_without_the_field_is_400(client: httpx.AsyncClient) -> None:
    assert_error_body(await client.post("/api/token/verify/", json={}), 400, "token")


# Me ---------------------------------------------------------------------------------------------


async def test_me_returns_the_caller(client: httpx.AsyncClient) -> None:
    user = await register_and_login(client, "Instructor", full_name="Barbara Liskov")
    for path in ("/api/users/me/", "/api/users/me"):
        response = await client.get(path, headers=user.headers)
        assert response.status_code == 200, response.text
        me = response.json()
        assert {key: me[key] for key in ("id", "email", "full_name", "role", "is_active")} == {
            "id": user.id,
            "email": user.email,
            "full_name": "Barbara Liskov",
            "role": "Instructor",
            "is_active": True,
        }
        assert ISO_UTC.match(me["created_at"]) and ISO_UTC.match(me["updated_at"])


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "bearer a.b.c"},
        {"Authorization": "Basic YTpi"},
        {"Authorization": "Token abc"},
        {"Authorization": "Bearer not-a-token"},
    ],
)
async def test_me_without_a_valid_token_is_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/api/users/me/", headers=headers)
    assert_error_body(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


# Logout -----------------------------------------------------------------------------------------


async def test_logout_revokes_the_refresh_token(client: httpx.AsyncClient, student: User) -> None:
    response = await client.post(
        "/api/auth/logout/", json={"refresh": student.refresh}, headers=student.headers
    )
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_error_body(
        await client.post("/api/token/refresh/", json={"refresh": student.refresh}), 401
    )


async def test_logout_revokes_every_token_of_that_login(client: httpx.AsyncClient) -> None:
    user = await register_and_login(client)
    rotated = (await client.post("/api/token/refresh/", json={"refresh": user.refresh})).json()
    # Logging out with the current token of the chain ends the whole login session.
    response = await client.post(
        "/api/auth/logout", data={"refresh": rotated["refresh"]}, headers=user.headers
    )
    assert response.status_code == 204
    assert_error_body(
        await client.post("/api/token/refresh/", json={"refresh": rotated["refresh"]}), 401
    )


async def test_logout_leaves_other_logins_alone(client: httpx.AsyncClient, student: User) -> None:
    other_session = await login(client, student.email)
    await client.post(
        "/api/auth/logout/", json={"refresh": student.refresh}, headers=student.headers
    )
    response = await client.post("/api/token/refresh/", json={"refresh": other_session["refresh"]})
    assert response.status_code == 200, response.text


async def test_logout_twice_is_fine(client: httpx.AsyncClient, student: User) -> None:
    # The logout ends that login's access token too (issue #14 item 5), so the second logout of
    # the same refresh token is made with another login's access token: still 204.
    other = await login(client, student.email)
    for headers in (student.headers, {"Authorization": f"Bearer {other['access']}"}):
        response = await client.post(
            "/api/auth/logout/", json={"refresh": student.refresh}, headers=headers
        )
        assert response.status_code == 204, response.text


async def test_logout_needs_an_access_token(client: httpx.AsyncClient, student: User) -> None:
    assert_error_body(
        await client.post("/api/auth/logout/", json={"refresh": student.refresh}), 401
    )
    # And the refresh token was not revoked by the refused call.
    response = await client.post("/api/token/refresh/", json={"refresh": student.refresh})
    assert response.status_code == 200


async def test_nobody_can_log_someone_else_out(client: httpx.AsyncClient) -> None:
    victim = await register_and_login(client)
    attacker = await register_and_login(client)
    response = await client.post(
        "/api/auth/logout/", json={"refresh": victim.refresh}, headers=attacker.headers
    )
    assert_error_body(response, 403)
    refreshed = await client.post("/api/token/refresh/", json={"refresh": victim.refresh})
    assert refreshed.status_code == 200


async def test_logout_with_an_access_token_in_place_of_the_refresh_is_401(
    client: httpx.AsyncClient, student: User
) -> None:
    response = await client.post(
        "/api/auth/logout/", json={"refresh": student.access}, headers=student.headers
    )
    assert_error_body(response, 401)


async def test_logout_without_the_field_is_400(client: httpx.AsyncClient, student: User) -> None:
    response = await client.post("/api/auth/logout/", json={}, headers=student.headers)
    assert_error_body(response, 400, "refresh")
