"""Engines and sessions: SQLite (WAL) by default, PostgreSQL when the URL says so."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from store.models import Base


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout so the API and a worker can share the file."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {})
        kwargs["connect_args"].setdefault("timeout", 30)
        kwargs["connect_args"].setdefault("check_same_thread", False)
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver we depend on; SQLAlchemy's bare scheme would look for psycopg2.
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


class SchemaMismatch(RuntimeError):
    """The database holds nfrecon tables from another version (columns missing)."""


def create_schema(engine: Engine) -> None:
    """Create the tables if missing (idempotent; several processes may call it at once).

    Raises SchemaMismatch, naming the columns, when existing tables lack columns this version needs:
    there are no migrations yet, and an obscure SQL error on the first job would be worse.
    """
    Base.metadata.create_all(engine, checkfirst=True)
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in present]
        if missing:
            raise SchemaMismatch(
                f"table {table.name} in {engine.url.render_as_string(hide_password=True)} lacks columns "
                f"{', '.join(missing)}: it was made by another nfrecon version; use a new database "
                "(or move the old file away)"
            )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
