"""The test PostgreSQL server (scripts/postgres.sh, started by ``./run test``).

Its DSN comes in ``SESSION_BUDDY_TEST_PG_DSN`` (read at import: the autouse ``isolated_env``
fixture removes every ``SESSION_BUDDY_*`` variable before each test). Without it, postgres
tests are skipped - except under CI (``CI`` set), where they fail: CI never skips them
silently. Each test works in its own schema, dropped afterwards.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

PG_DSN = os.environ.get("SESSION_BUDDY_TEST_PG_DSN") or None
IN_CI = bool(os.environ.get("CI"))
#: run the postgres tests (they fail, not skip, under CI without a server)
PG_ENABLED = bool(PG_DSN) or IN_CI
SKIP_REASON = (
    "no test PostgreSQL: set SESSION_BUDDY_TEST_PG_DSN (./run test starts one with "
    "scripts/postgres.sh)"
)
needs_pg = pytest.mark.skipif(not PG_ENABLED, reason=SKIP_REASON)

#: schemas made by the current test (dropped by the ``pg_cleanup`` fixture)
SCHEMAS: set[str] = set()


def pg_dsn() -> str:
    if PG_DSN is None:
        pytest.fail(
            "CI is set but SESSION_BUDDY_TEST_PG_DSN is not: the test PostgreSQL server did "
            "not start (see scripts/postgres.sh and ./run test); postgres tests never skip in CI"
        )
    return PG_DSN


def schema_for(tmp_path: Path, name: str = "") -> str:
    """A schema name unique to this test folder (the same for the same folder: restarts)."""
    digest = hashlib.sha256(f"{tmp_path}|{name}".encode()).hexdigest()[:16]
    schema = f"t_{digest}"
    SCHEMAS.add(schema)
    return schema


async def drop_schemas() -> None:
    if not SCHEMAS or PG_DSN is None:
        SCHEMAS.clear()
        return
    import asyncpg

    con = await asyncpg.connect(PG_DSN)
    try:
        for schema in sorted(SCHEMAS):
            await con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await con.close()
        SCHEMAS.clear()
