"""Real databases for tests: one fresh database per test on SQLite, PostgreSQL or MariaDB."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import pool
from sqlalchemy.engine import Engine

Backend = Literal["sqlite", "postgresql", "mariadb"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "postgresql", "mariadb")

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
MARIADB_HOST, MARIADB_PORT, MARIADB_USER = "127.0.0.1", 3306, "root"
CONNECT_TIMEOUT = 3  # seconds: an absent server must not stall the run

_CONNECT_ARGS: dict[Backend, dict[str, Any]] = {
    "sqlite": {},
    "postgresql": {"connect_timeout": CONNECT_TIMEOUT},
    "mariadb": {"connect_timeout": CONNECT_TIMEOUT},
}


class ServerUnavailable(Exception):
    """The database server of a backend cannot be reached."""


@dataclass
class Database:
    """One database that belongs to one test.

    ``url`` is the synchronous SQLAlchemy URL written into ``alembic.ini``; ``async_url`` is
    the asyncio one (None where no async driver is installed, i.e. MariaDB).
    """

    backend: Backend
    url: str
    async_url: str | None
    name: str
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        """A pool-less engine on this database (no connection outlives a call)."""
        if self._engine is None:
            self._engine = sa.create_engine(
                self.url, poolclass=pool.NullPool, connect_args=_CONNECT_ARGS[self.backend]
            )
        return self._engine

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one SQL statement in its own committed transaction; return its rows, if any."""
        with self.engine.begin() as connection:
            result = connection.execute(sa.text(sql))
            return [tuple(row) for row in result] if result.returns_rows else []

    def tables(self, schema: str | None = None) -> set[str]:
        """Names of the tables in the database (in ``schema``, or the default one)."""
        with self.engine.connect() as connection:
            return set(sa.inspect(connection).get_table_names(schema=schema))

    def versions(self, table: str = "alembic_version", schema: str | None = None) -> set[str]:
        """Revision ids stored in Alembic's version table; empty if the table does not exist."""
        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table(table, schema=schema):
                return set()
            version_table = sa.table(table, sa.column("version_num"), schema=schema)
            rows = connection.execute(sa.select(version_table.c.version_num))
            return {str(row[0]) for row in rows}

    def dispose(self) -> None:
        """Close the helper engine (before the database is dropped)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def unique_name() -> str:
    """A database name no other test, worker or run will pick."""
    return f"autocopy_test_{uuid.uuid4().hex[:16]}"


def _server_url(backend: Backend, database: str = "") -> str:
    if backend == "postgresql":
        return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database or 'postgres'}"
    if backend == "mariadb":
        return f"mysql+pymysql://{MARIADB_USER}@{MARIADB_HOST}:{MARIADB_PORT}/{database}"
    raise ValueError(f"no server for backend {backend!r}")


def _admin_engine(backend: Backend) -> Engine:
    # AUTOCOMMIT: CREATE/DROP DATABASE cannot run inside a transaction on PostgreSQL.
    return sa.create_engine(
        _server_url(backend),
        poolclass=pool.NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args=_CONNECT_ARGS[backend],
    )


@functools.cache
def server_problem(backend: Backend) -> str | None:
    """Why the server of ``backend`` cannot be used, or None if it answers (checked once)."""
    if backend == "sqlite":
        return None
    engine = _admin_engine(backend)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as error:  # any driver error means: not usable here
        where = _server_url(backend)
        cause = getattr(error, "orig", None) or error  # the driver's own error, if wrapped
        first_line = (str(cause).strip().splitlines() or [""])[0]
        return f"{backend} server unreachable at {where}: {type(cause).__name__}: {first_line}"
    finally:
        engine.dispose()
    return None


def _run_admin(backend: Backend, statement: str) -> None:
    engine = _admin_engine(backend)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def _sqlite_database(tmp_path: Path) -> Database:
    name = unique_name()
    path = tmp_path / f"{name}.sqlite"
    return Database(
        backend="sqlite",
        url=f"sqlite:///{path}",
        async_url=f"sqlite+aiosqlite:///{path}",
        name=name,
    )


def _server_database(backend: Backend, name: str) -> Database:
    url = _server_url(backend, name)
    async_url = url.replace("+psycopg", "+asyncpg") if backend == "postgresql" else None
    return Database(backend=backend, url=url, async_url=async_url, name=name)


@contextlib.contextmanager
def temporary_database(backend: Backend, tmp_path: Path) -> Iterator[Database]:
    """Create a fresh empty database, yield it, drop it whatever happened.

    Raises ServerUnavailable (before creating anything) when the server does not answer.
    """
    if backend == "sqlite":
        database = _sqlite_database(tmp_path)
        try:
            yield database
        finally:
            database.dispose()
        return
    problem = server_problem(backend)
    if problem is not None:
        raise ServerUnavailable(problem)
    name = unique_name()
    _run_admin(backend, f"CREATE DATABASE {name}")
    database = _server_database(backend, name)
    try:
        yield database
    finally:
        database.dispose()
        _run_admin(backend, _drop_statement(backend, name))


def _drop_statement(backend: Backend, name: str) -> str:
    if backend == "postgresql":
        # FORCE: a subprocess killed by a timeout may still hold a connection.
        return f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    return f"DROP DATABASE IF EXISTS {name}"
