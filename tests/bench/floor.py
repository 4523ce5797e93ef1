"""The floor: what PostgreSQL itself does on this machine in the same run (`pgbench -S`, primary-key
SELECTs, one per transaction), so each scenario's rate reads as a fraction of it and results
compare across machines (docs/benchmarks.md, "The floor").

pgbench comes from the embedded PostgreSQL's binaries (the `pgserver` package, a dev dependency)
or, failing that, from PATH. Its tables go into a database of their own on the bench's server,
dropped afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from libs.embedded import drop_database, ensure_database
from tests.bench.config import BenchError, log

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
# pgbench's scale factor: 100,000 accounts, which fit in shared buffers (a cached-read floor).
SCALE = 1


@dataclass(frozen=True)
class Floor:
    tps: float
    clients: int
    threads: int
    duration_s: int
    binary: str


def find_pgbench() -> str | None:
    try:
        import pgserver  # a dev dependency: optional here

        bundled = Path(os.path.dirname(pgserver.__file__)) / "pginstall" / "bin" / "pgbench"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("pgbench")


def _pgbench(binary: str, *args: str) -> str:
    done = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"pgbench {' '.join(args[:-1])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout + done.stderr


def measure_floor(admin_url: str, *, clients: int, threads: int, duration_s: int) -> Floor:
    """`pgbench -S` with `clients` connections for `duration_s` seconds on a scratch database."""
    binary = find_pgbench()
    if binary is None:
        raise BenchError("pgbench not found (neither pgserver's binaries nor PATH have it)")
    name = f"cp_floor_{uuid.uuid4().hex[:10]}"
    url = ensure_database(admin_url, name)
    try:
        _pgbench(binary, "-i", "-q", "-s", str(SCALE), url)
        log(f"floor: pgbench -S, {clients} clients, {duration_s} s")
        output = _pgbench(
            binary, "-S", "-n", "-c", str(clients), "-j", str(threads), "-T", str(duration_s), url
        )
    finally:
        drop_database(admin_url, name)
    found = _TPS.search(output)
    if found is None:
        raise BenchError(f"pgbench printed no tps line:\n{output[-1000:]}")
    return Floor(float(found.group(1)), clients, threads, duration_s, binary)
