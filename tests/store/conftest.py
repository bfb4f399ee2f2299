"""A JobStore on SQLite and on the real PostgreSQL (own schema per test, dropped afterwards)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from store import JobStore, make_engine, sqlite_url
from tests.service_fixtures import POSTGRES_URL, postgres_available


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        engine = make_engine(sqlite_url(tmp_path / "jobs.db"))
        yield JobStore(engine)
        engine.dispose()
        return
    if not postgres_available():
        pytest.skip("no PostgreSQL at 127.0.0.1:5432 (db test)")
    schema = f"nfrecon_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = make_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield JobStore(engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
