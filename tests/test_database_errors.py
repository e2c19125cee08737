"""Issue 12 item 6: database errors say what really happened, under the URL env.py really
used (masked), with exit code 1: the server refused the connection, it refused the login, a
migration failed (its id, its file, and what the database holds after it), SQLite is locked.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from support import BASE_REV, Database, Repo, Worktree, make_repo
from support.project import EnvKind

PLACEHOLDER = "driver://user:pass@localhost/dbname"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def url_from_environment(worktree: Worktree) -> None:
    """env.py takes its URL from $APP_DATABASE_URL; alembic.ini keeps the template's
    placeholder (the FastAPI-style setup of issue 12)."""
    env_py = worktree.path / "migrations" / "env.py"
    text = env_py.read_text()
    anchor = next(line + "\n" for line in text.splitlines()
                  if line.startswith("    connectable = ") and "engine_from_config(" in line)
    env_py.write_text(text.replace(anchor, '    import os\n    config.set_main_option('
                                           '"sqlalchemy.url", os.environ["APP_DATABASE_URL"])\n'
                                           + anchor))
    ini = worktree.path / "alembic.ini"
    lines = [f"sqlalchemy.url = {PLACEHOLDER}" if line.startswith("sqlalchemy.url") else line
             for line in ini.read_text().splitlines()]
    ini.write_text("\n".join(lines) + "\n")


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    found = errors(result)
    assert result.returncode == 1, result.stderr
    assert len(found) == 1, result.stderr
    return found[0]


@pytest.mark.parametrize("env", ["sync", "async"])
def test_connection_refused_names_the_url_env_py_used(tmp_path: Path, sqlite_db: Database,
                                                      env: EnvKind) -> None:
    repo = make_repo(tmp_path, sqlite_db, env=env)
    b = repo.main
    url_from_environment(b)
    port = closed_port()
    drivers = ["postgresql+psycopg", "mysql+pymysql"] if env == "sync" else [
        "postgresql+asyncpg"]
    for driver in drivers:
        url = f"{driver}://app:Pw4Refused@127.0.0.1:{port}/appdb"
        shown = f"{driver}://app:***@127.0.0.1:{port}/appdb"
        for command in ("check", "upgrade"):
            result = b.autocopy(command, env={"APP_DATABASE_URL": url})
            message = one_error(result)
            assert f"cannot connect to {shown}: the server refused the connection" in message
            assert "driver://" not in result.stderr and "Pw4Refused" not in result.stderr
            assert "start the database server" in result.stderr


def test_a_refused_connection_without_sqlalchemy_url_in_the_ini_names_env_py(
        tmp_path: Path, sqlite_db: Database) -> None:
    """alembic.ini sets no sqlalchemy.url at all (env.py builds it from settings, as in the
    FastAPI template): the hint names the URL env.py builds, not a setting that is not there."""
    repo = make_repo(tmp_path, sqlite_db)
    b = repo.main
    url_from_environment(b)
    url = "postgresql+psycopg://u@127.0.0.1:1/x"  # nothing listens on port 1
    placeholder = b.autocopy("check", env={"APP_DATABASE_URL": url})
    assert "cannot connect to postgresql+psycopg://u@127.0.0.1:1/x" in one_error(placeholder)
    ini = b.path / "alembic.ini"
    assert (f"hint: start the database server, or fix the host and port in sqlalchemy.url in "
            f"{ini} (or the URL env.py builds)") in placeholder.stderr  # it sets one
    ini.write_text("".join(line for line in ini.read_text().splitlines(keepends=True)
                           if not line.startswith("sqlalchemy.url")))

    for command in ("check", "upgrade"):
        result = b.autocopy(command, env={"APP_DATABASE_URL": url})

        assert "cannot connect to postgresql+psycopg://u@127.0.0.1:1/x" in one_error(result)
        assert ("hint: start the database server, or fix the host and port in the URL env.py "
                "builds (alembic.ini sets no sqlalchemy.url)") in result.stderr, result.stderr
        assert "sqlalchemy.url in" not in result.stderr


def test_a_refused_login_is_named_as_such_on_mariadb(tmp_path: Path,
                                                     mariadb_db: Database) -> None:
    repo = make_repo(tmp_path, mariadb_db)
    b = repo.main
    url_from_environment(b)
    url = mariadb_db.url.replace("root@", "root:WrongPw42@", 1)

    result = b.autocopy("check", env={"APP_DATABASE_URL": url})

    message = one_error(result)
    shown = mariadb_db.url.replace("root@", "root:***@", 1)
    assert f"refused the login to {shown} (authentication failed)" in message
    assert "Access denied" in message and "WrongPw42" not in result.stderr
    assert "check the user name and password" in result.stderr
    assert "postgresql" not in result.stderr and "driver://" not in result.stderr


def failing_own_migration(repo: Repo) -> tuple[Worktree, str, str]:
    """Worktree A applied a chain; B (main) has a migration of its own that creates its
    table, then fails. Returns B, its revision and its file (relative)."""
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    a.chain(2, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    revision = "b00000000001"
    path = b.write_migration(revision, down=BASE_REV, message="fails halfway")
    text = path.read_text()
    create = f"op.create_table('t_{revision}'"
    assert create in text
    path.write_text(text.replace("def upgrade() -> None:\n",
                                 "def upgrade() -> None:\n"
                                 f"    {create}, sa.Column('id', sa.Integer()))\n"
                                 "    op.execute('INSERT INTO no_such_table VALUES (1)')\n"
                                 "    return\n", 1))
    b.commit("b: a migration that fails after its first statement")
    return b, revision, str(path.relative_to(b.path))


def test_a_failed_migration_on_mariadb_names_it_and_what_it_left(tmp_path: Path,
                                                                 mariadb_db: Database) -> None:
    repo = make_repo(tmp_path, mariadb_db)
    b, revision, path = failing_own_migration(repo)

    first = one_error(b.autocopy("upgrade"))

    assert f"migration {revision} ({path}) failed:" in first
    assert "no_such_table" in first and "MariaDB has no transactional DDL" in first
    assert "the version table still says a00000000002" in first
    assert f"it left table(s) t_{revision} created" in first
    assert f"t_{revision}" in mariadb_db.tables()  # what the message says is true

    again = b.autocopy("upgrade")  # Alembic runs it again over what it left
    message = one_error(again)
    assert f"migration {revision} ({path}) failed:" in message and "already exists" in message
    assert "an earlier run of this migration" in again.stderr


def test_a_failed_migration_on_postgresql_says_it_was_rolled_back(
        tmp_path: Path, postgresql_db: Database) -> None:
    repo = make_repo(tmp_path, postgresql_db)
    b, revision, path = failing_own_migration(repo)

    message = one_error(b.autocopy("upgrade"))

    assert f"migration {revision} ({path}) failed:" in message
    assert "PostgreSQL rolled it back (transactional DDL)" in message
    assert f"t_{revision}" not in postgresql_db.tables()


def test_a_locked_sqlite_database_is_named_locked(tmp_path: Path, sqlite_db: Database) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    holder = sqlite3.connect(sqlite_db.url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another program in the middle of a write
        result = b.autocopy("check")
    finally:
        holder.close()

    message = one_error(result)
    assert f"the database {sqlite_db.url} is locked" in message
    assert "database is locked" in message and "server" not in result.stderr


def test_a_database_missing_on_its_server_is_named_as_such(tmp_path: Path,
                                                           postgresql_db: Database) -> None:
    repo = make_repo(tmp_path, postgresql_db)
    b = repo.main
    url_from_environment(b)
    url = postgresql_db.url.rsplit("/", 1)[0] + "/no_such_app_db"

    message = one_error(b.autocopy("check", env={"APP_DATABASE_URL": url}))

    assert f"the database named in {url} does not exist on its server" in message


@pytest.mark.parametrize("env", ["sync", "async"])
def test_a_traceback_starts_at_the_failure_not_at_an_event_loop_probe(
        tmp_path: Path, sqlite_db: Database, env: EnvKind) -> None:
    """``--traceback`` showed every failure of env.py "during handling of" an unrelated
    ``RuntimeError: no running event loop`` (the probe for a running loop)."""
    b = make_repo(tmp_path, sqlite_db, env=env).main
    url_from_environment(b)
    driver = "postgresql+psycopg" if env == "sync" else "postgresql+asyncpg"
    url = f"{driver}://app:Pw4Refused@127.0.0.1:{closed_port()}/appdb"

    result = b.autocopy("check", "--traceback", env={"APP_DATABASE_URL": url})

    assert result.returncode == 1 and "Traceback" in result.stderr
    assert "the server refused the connection" in result.stderr
    assert "no running event loop" not in result.stderr
