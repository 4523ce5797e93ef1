"""`python -m services.identity create-admin` (issue #14 item 6) as an operator runs it: a real
subprocess on the suite's database, the password on stdin (a pipe) or typed at a real
pseudo-terminal, then the administrator logging in through the gateway."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import httpx
import pytest

from libs.settings import Settings
from tests.conftest import TEST_PASSWORD, assert_error_body, register_and_login, unique_email
from tests.process_support import ROOT, process_env

COMMAND = [sys.executable, "-m", "services.identity", "create-admin"]


def run_command(
    settings: Settings, *arguments: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        env=process_env(settings),
        cwd=ROOT,
        timeout=60,
    )


async def login_answer(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login/", json={"email": email, "password": password})


async def test_creates_an_active_admin_with_the_password_read_from_stdin(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    email = unique_email("cli-admin")
    done = run_command(
        settings, "--email", email, "--full-name", "Ada Admin", stdin=f"{TEST_PASSWORD}\n"
    )
    assert done.returncode == 0, done.stderr
    assert f"created administrator {email}" in done.stdout
    assert TEST_PASSWORD not in done.stdout + done.stderr
    answer = await login_answer(client, email, TEST_PASSWORD)
    assert answer.status_code == 200, answer.text
    assert answer.json()["role"] == "Admin"
    assert answer.json()["authorities"] == ["Admin"]
    assert answer.json()["full_name"] == "Ada Admin"


async def test_promotes_an_existing_user_and_ends_their_sessions(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await register_and_login(client, "Instructor")
    new_password = "another-long-pass-7"
    done = run_command(
        settings, "--email", user.email.upper(), "--full-name", "Promoted One",
        stdin=f"{new_password}\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"promoted to administrator: {user.email} (id {user.id})" in done.stdout
    answer = await login_answer(client, user.email, new_password)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["role"], answer.json()["id"]) == ("Admin", user.id)
    assert (await login_answer(client, user.email, TEST_PASSWORD)).status_code == 401
    stale = await client.post("/api/token/refresh/", json={"refresh": user.refresh})
    assert_error_body(stale, 401)


@pytest.mark.parametrize(
    ("arguments", "stdin", "says"),
    [
        (("--full-name", "Ada"), "", "--email"),
        (("--email", "{email}"), "", "--full-name"),
        (("--email", "{email}", "--full-name", "Ada", "--password", "x"), "", "unrecognized"),
        (("--email", "{email}", "--full-name", "Ada"), "short\n", "at least 8 characters"),
        (("--email", "{email}", "--full-name", "Ada"), "", "a password is required"),
        (("--email", "{email}", "--full-name", "Ada"), "x" * 129 + "\n", "no more than 128"),
        (("--email", "not-an-email", "--full-name", "Ada"), f"{TEST_PASSWORD}\n", "email"),
        (("--email", "{email}", "--full-name", "   "), f"{TEST_PASSWORD}\n", "full_name"),
    ],
)
async def test_refuses_with_a_clear_message_and_a_nonzero_exit(
    client: httpx.AsyncClient,
    settings: Settings,
    arguments: tuple[str, ...],
    stdin: str,
    says: str,
) -> None:
    email = unique_email("cli-refused")
    done = run_command(settings, *(a.format(email=email) for a in arguments), stdin=stdin)
    assert done.returncode != 0
    assert says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    # Nothing was created.
    assert (await login_answer(client, email, TEST_PASSWORD)).status_code == 401


def run_at_a_terminal(settings: Settings, email: str, typed: list[str]) -> tuple[int, str]:
    """The command with a pseudo-terminal as its controlling terminal (getpass reads from it);
    each of `typed` is entered after the next `Password` prompt. Exit status and output."""
    env = process_env(settings)
    pid, terminal = pty.fork()
    if pid == 0:  # the child: becomes the command at once
        os.chdir(ROOT)
        os.execve(sys.executable, [*COMMAND, "--email", email, "--full-name", "Tty Admin"], env)
    output = b""
    deadline = time.monotonic() + 60
    answers = list(typed)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(terminal, 4096)
                except OSError:  # the child closed the terminal: it exited
                    break
                if not chunk:
                    break
                output += chunk
                # getpass has turned echo off (and flushed pending input) when it prompts.
                if answers and output.endswith(b": "):
                    os.write(terminal, answers.pop(0).encode() + b"\n")
    finally:
        os.close(terminal)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


async def test_at_a_terminal_it_asks_twice(client: httpx.AsyncClient, settings: Settings) -> None:
    email = unique_email("cli-tty")
    code, output = run_at_a_terminal(settings, email, [TEST_PASSWORD, TEST_PASSWORD])
    assert code == 0, output
    assert output.count("Password") == 2
    assert TEST_PASSWORD not in output  # typed without echo
    assert (await login_answer(client, email, TEST_PASSWORD)).status_code == 200


async def test_at_a_terminal_two_different_passwords_are_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    email = unique_email("cli-tty-mismatch")
    code, output = run_at_a_terminal(settings, email, [TEST_PASSWORD, "something-else-42"])
    assert code == 1, output
    assert "do not match" in output
    assert (await login_answer(client, email, TEST_PASSWORD)).status_code == 401
