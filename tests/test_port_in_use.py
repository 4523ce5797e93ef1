"""A service started on a port that is already taken exits non-zero with one clear line instead
of serving (grpc's SO_REUSEPORT default would let both processes share the port silently)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from libs.settings import Settings
from tests.process_support import gateway, grpc_service


def last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


async def test_a_second_catalog_on_the_same_port_exits_with_a_clear_message(
    settings: Settings, tmp_path: Path
) -> None:
    first = await grpc_service("catalog", settings, tmp_path).start()
    try:
        await first.wait_ready()
        second = await grpc_service("catalog", settings, tmp_path, port=first.port).start()
        code = await second.wait(60)
        assert code != 0, second.output
        assert last_line(second.output) == f"catalog: port {first.port} is already in use"
        assert "serving" not in second.output
        assert await first.ready()  # the first one is untouched
    finally:
        await first.stop()


@pytest.mark.parametrize("service", ["identity", "learning"])
async def test_a_service_on_a_port_another_program_holds_exits_non_zero(
    settings: Settings, tmp_path: Path, service: str
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        process = await grpc_service(service, settings, tmp_path, port=port).start()
        code = await process.wait(60)
    assert code != 0, process.output
    assert last_line(process.output) == f"{service}: port {port} is already in use"


async def test_the_gateway_on_a_taken_port_exits_non_zero(
    settings: Settings, tmp_path: Path
) -> None:
    # uvicorn already fails to start on a taken port (exit code 3) and logs why.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        process = gateway(settings, tmp_path)
        process.env["GATEWAY_PORT"] = str(port)
        await process.start()
        code = await process.wait(60)
    assert code != 0, process.output
    assert "address already in use" in process.output.lower()
