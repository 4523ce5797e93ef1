"""`make run` as a new user meets it: `python -m libs.devstack run` in a fresh directory (its own
`.data/`, embedded PostgreSQL and Redis, every port a free one), read from its output.

- the banner comes only once the gateway's /readyz/ answers 200, with the time it took;
- a start prints no warning and no line matching "error";
- the README's grpcurl block works as written on this fresh stack (tests/readme_grpcurl.py);
- a second run on the same `.data/` refuses at once and leaves the first one running;
- Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops everything and
  ends with a "stopped" line.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis import Redis

from libs.embedded import free_port, tcp_port_open
from tests.readme_grpcurl import Session, commands, readme_block

README = Path(__file__).resolve().parent.parent / "README.md"
START_TIMEOUT_S = 180.0
# The variables a developer's shell might have that would change what `make run` does.
UNSET = ("DATABASE_URL", "REDIS_URL", "LOG_JSON", "SMTP_HOST", "MAIL_DIR", "JWT_KEYS_DIR")
README_PORTS = {"IDENTITY_PORT": 50051, "CATALOG_PORT": 50052, "LEARNING_PORT": 50053}


def stack_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in UNSET}
    ports = {
        name: free_port()
        for name in (
            "GATEWAY_PORT",
            "IDENTITY_PORT",
            "CATALOG_PORT",
            "LEARNING_PORT",
            "NOTIFIER_HEALTH_PORT",
            "EMBEDDED_REDIS_PORT",
        )
    }
    env.update({name: str(port) for name, port in ports.items()})
    for service in ("IDENTITY", "CATALOG", "LEARNING"):
        env[f"{service}_TARGET"] = f"127.0.0.1:{ports[f'{service}_PORT']}"
    return env


def readyz_status(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz/", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None  # nothing answers


@dataclass
class Stack:
    process: subprocess.Popen[str]
    directory: Path
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    # /readyz/ as the reader saw it the moment the banner line arrived.
    readyz_at_banner: int | None = None
    banner: threading.Event = field(default_factory=threading.Event)
    started_at: float = field(default_factory=time.monotonic)
    banner_after_s: float = 0.0

    def port(self, name: str) -> int:
        return int(self.env[name])

    def read(self) -> None:
        """Reader thread: every output line; /readyz/ probed as soon as the banner shows."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("courseplatform is up"):
                self.readyz_at_banner = readyz_status(self.port("GATEWAY_PORT"))
                self.banner_after_s = time.monotonic() - self.started_at
                self.banner.set()

    def start_lines(self) -> list[str]:
        """Output up to and including the banner."""
        for index, line in enumerate(self.lines):
            if line.startswith("courseplatform is up"):
                return self.lines[: index + 1]
        return list(self.lines)


def start_stack(directory: Path, env: dict[str, str]) -> Stack:
    process = subprocess.Popen(
        [sys.executable, "-m", "libs.devstack", "run"],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, for the Ctrl-C test
    )
    running = Stack(process, directory, env)
    threading.Thread(target=running.read, daemon=True).start()
    return running


def wait_for_line(stack: Stack, prefix: str, containing: str = "") -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not any(line.startswith(prefix) and containing in line for line in stack.lines):
        if stack.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no line {prefix!r}:\n" + "\n".join(stack.lines[-40:]))
        time.sleep(0.2)


def end(stack: Stack) -> None:
    if stack.process.poll() is None:
        os.killpg(stack.process.pid, signal.SIGINT)
        try:
            stack.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("fresh-clone"), stack_env())
    try:
        wait_for_line(running, "courseplatform is up")
        # The line is listed before the reader thread has probed /readyz/ for it: wait for that.
        assert running.banner.wait(timeout=30), "the reader never finished probing /readyz/"
        yield running
    finally:
        end(running)


def test_the_banner_comes_once_readyz_answers_with_the_time_taken(stack: Stack) -> None:
    assert stack.readyz_at_banner == 200, stack.start_lines()[-10:]
    banner = stack.start_lines()[-1]
    took = re.fullmatch(r"courseplatform is up \(ready in (\d+\.\d) s\):", banner)
    assert took, banner
    # The time printed is the command's own start-to-ready time, within what this test saw.
    assert 0 < float(took.group(1)) <= stack.banner_after_s + 0.5
    print(f"make run ready in {took.group(1)} s (embedded PostgreSQL and Redis, fresh .data)")


def test_a_start_prints_no_warning_and_no_line_matching_error(stack: Stack) -> None:
    noisy = [line for line in stack.start_lines() if re.search(r"warn|error", line, re.I)]
    assert noisy == []


def test_the_readme_grpcurl_block_works_as_written_on_a_fresh_stack(stack: Stack) -> None:
    ports = {default: stack.port(name) for name, default in README_PORTS.items()}
    session = Session(ports)
    block = commands(readme_block(README.read_text(), "## Talking to the services with grpcurl"))
    assert len(block) >= 12
    for line in block:
        try:
            session.run(line)
        except grpc.RpcError as error:
            pytest.fail(f"{line}\n-> {error.code().name}: {error.details()}")
    outputs = {step.command.split("/")[-1].split()[0]: step.output for step in session.steps}
    assert "courseplatform.identity.v1.IdentityService" in session.steps[0].output
    assert session.variables["ANN"].count(".") == 2  # a JWT, not "null"
    assert session.variables["BOB"].count(".") == 2
    assert session.variables["COURSE"].isdigit() and session.variables["ENROLLMENT"].isdigit()
    assert '"status": "SERVING"' in outputs["Check"]
    assert '"course_title": "gRPC in practice"' in outputs["GetEnrollment"]
    assert '"total_lessons": 1' in outputs["GetEnrollment"]

    # As the README says: run again on the same database, only the two Register calls fail.
    again = Session(ports)
    refused = []
    for line in block:
        try:
            again.run(line)
        except grpc.RpcError as error:
            refused.append((line.split("/")[-1].split()[0], error.code()))
    assert refused == [("Register", grpc.StatusCode.FAILED_PRECONDITION)] * 2
    assert again.variables["COURSE"] != session.variables["COURSE"]  # a second course, enrolled


def test_a_second_run_on_the_same_data_refuses_at_once_and_leaves_the_first_alone(
    stack: Stack,
) -> None:
    lock = stack.directory / ".data" / "devstack.lock"
    holder = lock.read_text()
    began = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "libs.devstack", "run"],
        cwd=stack.directory,
        env=stack_env(),  # other free ports: a refusal must not come from a port clash
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - began
    assert second.returncode == 1
    assert f"another `make run` (pid {stack.process.pid}) is already using .data/" in second.stderr
    assert "starting embedded" not in second.stdout + second.stderr
    assert took < 10, took  # the import time of the module, nothing started
    print(f"second make run refused in {took:.2f} s")

    # The first stack is untouched: its lock, its embedded Redis, its services and gateway.
    assert lock.read_text() == holder == f"{stack.process.pid}\n"
    with Redis(port=stack.port("EMBEDDED_REDIS_PORT"), socket_timeout=5) as redis:
        assert redis.ping()
    with grpc.insecure_channel(f"127.0.0.1:{stack.port('IDENTITY_PORT')}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert readyz_status(stack.port("GATEWAY_PORT")) == 200
    assert stack.process.poll() is None


def test_ctrl_c_stops_every_process_and_ends_with_a_stopped_line(stack: Stack) -> None:
    before = len(stack.lines)
    began = time.monotonic()
    os.killpg(stack.process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    assert stack.process.wait(timeout=60) == 0
    took = time.monotonic() - began
    time.sleep(0.2)  # the reader drains the last lines
    after = stack.lines[before:]
    assert after[-1].startswith("courseplatform stopped in "), after[-5:]
    assert took < 8, (took, after[-5:])  # it used to end in ~7 s of silence
    print(f"stopped {took:.2f} s after Ctrl-C; last line: {after[-1]}")
    for name in ("GATEWAY_PORT", "IDENTITY_PORT", "NOTIFIER_HEALTH_PORT", "EMBEDDED_REDIS_PORT"):
        assert not tcp_port_open("127.0.0.1", stack.port(name)), name
    assert not (stack.directory / ".data" / "postgres" / "postmaster.pid").exists()
    noisy = [line for line in after if re.search(r"warn|error|traceback", line, re.I)]
    assert noisy == [], "\n".join(after)


def test_while_not_ready_it_says_what_readyz_answers_and_never_claims_up(tmp_path: Path) -> None:
    env = stack_env()
    env["DEVSTACK_READY_NOTICE_S"] = "1"
    # The gateway looks for learning where nothing listens: /readyz/ stays 503.
    env["LEARNING_TARGET"] = f"127.0.0.1:{free_port()}"
    stack = start_stack(tmp_path, env)
    try:
        # Until the gateway listens the notice says "no answer"; then what /readyz/ says.
        wait_for_line(stack, "still waiting for http://127.0.0.1:", containing=": 503, ")
        notices = [line for line in stack.lines if line.startswith("still waiting")]
        notice = next(line for line in notices if ": 503, " in line)
        assert notice.endswith("/readyz/: 503, not serving yet: learning UNAVAILABLE"), notice
        os.killpg(stack.process.pid, signal.SIGINT)
        assert stack.process.wait(timeout=60) == 0
        time.sleep(0.2)
        assert not any(line.startswith("courseplatform is up") for line in stack.lines)
        assert stack.lines[-1].startswith("courseplatform stopped in "), stack.lines[-5:]
    finally:
        end(stack)


def test_a_service_that_dies_during_start_stops_the_stack_with_its_name(tmp_path: Path) -> None:
    env = stack_env()
    with socket.socket() as taken:  # identity's port is taken: it cannot serve
        taken.bind(("127.0.0.1", int(env["IDENTITY_PORT"])))
        taken.listen()
        stack = start_stack(tmp_path, env)
        try:
            assert stack.process.wait(timeout=START_TIMEOUT_S) == 1
        finally:
            end(stack)
    time.sleep(0.2)
    assert "identity exited with 1 during start-up; stopping the stack" in stack.lines
    assert not any(line.startswith("courseplatform is up") for line in stack.lines)
    assert re.fullmatch(r"courseplatform stopped in \d+\.\d s \(exit code 1\)", stack.lines[-1])
    assert not tcp_port_open("127.0.0.1", int(env["EMBEDDED_REDIS_PORT"]))
    assert not (tmp_path / ".data" / "postgres" / "postmaster.pid").exists()
