"""Fixtures shared by every test: a hermetic environment and real databases.

Databases: ``sqlite_db``, ``postgresql_db``, ``mariadb_db`` and ``any_db`` (the three in
turn). Each test gets a database of its own, dropped afterwards. A server that does not
answer skips the test, or fails it when the environment variable CI is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.databases import BACKENDS, Backend, Database, ServerUnavailable, temporary_database
from support.environment import hermetic_overrides

_MARKED_FIXTURES: dict[str, str] = {"postgresql_db": "postgresql", "mariadb_db": "mariadb"}


@pytest.fixture(autouse=True, scope="session")
def hermetic_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Isolate every test (and every subprocess) from the user's git and Alembic setup.

    Yields the temporary HOME. Session-wide: each xdist worker is its own process.
    """
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in hermetic_overrides(home, os.environ).items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        yield home


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use a server database, so ``-m "not postgresql"`` deselects them."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, marker in _MARKED_FIXTURES.items():
            if fixture in names:
                item.add_marker(marker)


def _database(backend: Backend, tmp_path: Path) -> Iterator[Database]:
    try:
        with temporary_database(backend, tmp_path) as database:
            yield database
    except ServerUnavailable as error:
        _unavailable(str(error))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the database servers must be running)", pytrace=False)
    pytest.skip(f"{reason} (start it, or set CI=1 to make this a failure)")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A fresh SQLite database file in the test's tmp_path."""
    yield from _database("sqlite", tmp_path)


@pytest.fixture
def postgresql_db(tmp_path: Path) -> Iterator[Database]:
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped WITH (FORCE) afterwards."""
    yield from _database("postgresql", tmp_path)


@pytest.fixture
def mariadb_db(tmp_path: Path) -> Iterator[Database]:
    """A fresh MariaDB database on 127.0.0.1:3306, dropped afterwards."""
    yield from _database("mariadb", tmp_path)


@pytest.fixture(
    params=[
        pytest.param(backend, id=backend, marks=[getattr(pytest.mark, backend)])
        if backend != "sqlite"
        else pytest.param(backend, id=backend)
        for backend in BACKENDS
    ]
)
def any_db(request: pytest.FixtureRequest) -> Database:
    """The test runs once per backend: sqlite, postgresql, mariadb."""
    database: Database = request.getfixturevalue(f"{request.param}_db")
    return database
