"""Two migration runs at once (two pods' init containers in one rollout) must both succeed and
leave each schema exactly at head: libs/migrations.py serialises them on a per-schema
PostgreSQL advisory lock."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic.script import ScriptDirectory

from libs import migrations
from libs.embedded import drop_database, ensure_database

SERVICES = ("identity", "catalog", "learning", "notifier")
RUNS = 2


@pytest.fixture
def fresh_database(admin_database_url: str) -> Iterator[str]:
    name = f"cp_migrate_{uuid.uuid4().hex[:12]}"
    url = ensure_database(admin_database_url, name)
    yield url
    drop_database(admin_database_url, name)


def _upgrade_in_step(url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    # Every run starts each service's upgrade at the same moment as the others.
    for service in SERVICES:
        barrier.wait(timeout=30)
        migrations.upgrade(url, service)


def head_of(url: str, service: str) -> str:
    script = ScriptDirectory.from_config(migrations._config(url, service))
    head = script.get_current_head()
    assert head is not None
    return head


def tables_in(conn: psycopg.Connection, schema: str) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
    ).fetchall()
    return {row[0] for row in rows}


def test_concurrent_upgrades_of_a_fresh_database_both_succeed(
    fresh_database: str, admin_database_url: str
) -> None:
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(RUNS)
    runs = [
        spawn.Process(target=_upgrade_in_step, args=(fresh_database, barrier)) for _ in range(RUNS)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    assert [run.exitcode for run in runs] == [0] * RUNS

    reference = f"cp_migrate_ref_{uuid.uuid4().hex[:8]}"
    ref_url = ensure_database(admin_database_url, reference)
    try:
        for service in SERVICES:
            migrations.upgrade(ref_url, service)
        with psycopg.connect(fresh_database) as raced, psycopg.connect(ref_url) as alone:
            for service in SERVICES:
                versions = raced.execute(
                    f'SELECT version_num FROM "{service}".{migrations.VERSION_TABLE}'
                ).fetchall()
                assert versions == [(head_of(fresh_database, service),)], service
                # The same tables as one migration run alone creates.
                assert tables_in(raced, service) == tables_in(alone, service), service
    finally:
        drop_database(admin_database_url, reference)


def test_a_second_run_waits_for_the_lock_holder(fresh_database: str) -> None:
    """The lock really is what orders them: while someone holds catalog's lock, a migration run
    of catalog (the init container's command) waits, creates nothing, and finishes once it is
    released."""
    with psycopg.connect(fresh_database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('catalog'))")
        waiting = subprocess.Popen(
            [sys.executable, "-m", "libs.migrations", "catalog"],
            env={**os.environ, "DATABASE_URL": fresh_database},
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(3)
            assert waiting.poll() is None
            assert tables_in(holder, "catalog") == set()
        finally:
            holder.execute("SELECT pg_advisory_unlock(hashtext('catalog'))")
        out, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 0
    assert out.strip() == "migrated catalog"
    with psycopg.connect(fresh_database) as conn:
        assert "courses" in tables_in(conn, "catalog")
