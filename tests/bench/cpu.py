"""CPU per request, per process, around a measured load run: from /proc/<pid>/stat (utime +
stime) of every platform process and its children (the gateway's workers), of the PostgreSQL
backends serving the bench database, and of the whole machine (/proc/stat), which shows what
else was running (another test suite, a build) while the numbers were taken. Linux only; on
other systems the table is left out."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

PROC = Path("/proc")
MACHINE = "machine"
POSTGRES = "postgres"


def available() -> bool:
    return (PROC / "stat").is_file()


def _ticks(pid: int) -> int | None:
    try:
        text = (PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                text = (entry / "stat").read_text(encoding="ascii", errors="replace")
                parents[int(entry.name)] = int(text.rsplit(")", 1)[1].split()[1])
    return parents


def _machine_ticks() -> int:
    """Busy ticks of all cores (everything but idle and iowait)."""
    first = (PROC / "stat").read_text(encoding="ascii").splitlines()[0].split()[1:]
    values = [int(value) for value in first[:8]]
    return sum(values) - values[3] - values[4]


def _backends(database_url: str | None, database: str | None) -> list[int]:
    if not database_url or not database:
        return []
    query = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(database_url, autocommit=True, connect_timeout=5) as connection,
    ):
        return [int(row[0]) for row in connection.execute(query, (database,)).fetchall()]
    return []


@dataclass
class Snapshot:
    # pid -> (group, ticks)
    processes: dict[int, tuple[str, int]]
    machine: int


class CpuMeter:
    """Groups: each platform process by name (with its descendants), `postgres` (the bench
    database's backends, local servers only), `machine` (all cores, anything running)."""

    def __init__(
        self,
        roots: Mapping[str, int],
        database_url: str | None = None,
        database: str | None = None,
    ) -> None:
        self.roots = dict(roots)
        self.database_url = database_url
        self.database = database
        self.ticks_per_s = os.sysconf("SC_CLK_TCK")

    def _groups(self) -> dict[int, str]:
        parents = _parents()
        groups = {pid: name for name, pid in self.roots.items()}
        changed = True
        while changed:  # descendants take their ancestor's group
            changed = False
            for pid, parent in parents.items():
                if pid not in groups and parent in groups:
                    groups[pid] = groups[parent]
                    changed = True
        for pid in _backends(self.database_url, self.database):
            groups.setdefault(pid, POSTGRES)
        return groups

    def snapshot(self) -> Snapshot:
        processes = {}
        for pid, group in self._groups().items():
            ticks = _ticks(pid)
            if ticks is not None:
                processes[pid] = (group, ticks)
        return Snapshot(processes, _machine_ticks())

    def per_request_ms(self, before: Snapshot, after: Snapshot, requests: int) -> dict[str, float]:
        """CPU ms per request by group (processes that came and went in between are missed)."""
        if requests <= 0:
            return {}
        spent: dict[str, int] = {}
        for pid, (group, ticks) in after.processes.items():
            start = before.processes.get(pid, (group, 0))[1]
            spent[group] = spent.get(group, 0) + max(0, ticks - start)
        spent[MACHINE] = after.machine - before.machine
        to_ms = 1000 / self.ticks_per_s / requests
        return {group: ticks * to_ms for group, ticks in spent.items()}


def ordered_groups(names: Iterable[str]) -> list[str]:
    names = set(names)
    fixed = ["gateway", "identity", "catalog", "learning", "notifier", POSTGRES]
    return [name for name in fixed if name in names] + sorted(names - {*fixed, MACHINE})
