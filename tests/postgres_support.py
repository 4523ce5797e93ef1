"""A private PostgreSQL a test can stop and start again, for outages injected for real.

The suite's shared server (tests/conftest.py) is never stopped: other runs may be using it.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from libs.embedded import EmbeddedPostgres


class RestartablePostgres:
    """An embedded PostgreSQL whose data survives stop/start, reached over the same socket."""

    def __init__(self, data_dir: Path | None = None) -> None:
        # A short path by default: the unix socket lives in the data directory.
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="pg-")) / "data"
        self._server: EmbeddedPostgres | None = EmbeddedPostgres(self.data_dir)
        self.url = self._server.url()
        self._lock = threading.Lock()  # stop/start may come from a thread (an SMTP handler)

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None

    def start(self) -> None:
        with self._lock:
            if self._server is None:
                self._server = EmbeddedPostgres(self.data_dir)
