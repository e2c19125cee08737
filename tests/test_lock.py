"""Issue 12 item 1, issue 13 items 5 and 6: the database lock.

- Async-only projects (asyncpg, aiosqlite, asyncmy and nothing else) repaired by every way in:
  `upgrade`, `run --`, `ensure_database_current()`, an `--auto-upgrade` hook. Run with the
  python of a real virtualenv that holds no synchronous driver.
- A lock that cannot lapse unnoticed: the lock connection ended by `idle_session_timeout`
  (PostgreSQL) or KILLed (MariaDB) mid-upgrade while a second process starts.
- The SQLite lock keyed by the file's identity: a symlinked path shares the lock.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import hashlib
import subprocess
import sys
import textwrap
import threading
import time
import venv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import sqlalchemy as sa

from alembic_autocopy.effects import locking
from alembic_autocopy.effects.database import Endpoint
from support import BASE_REV, Database, Repo, Worktree, make_repo, run
from support.databases import MARIADB_HOST, MARIADB_PORT, MARIADB_USER, temporary_database
from support.process import merged_env

CHECKOUT = Path(__file__).resolve().parents[1]
PINS = CHECKOUT / "requirements" / "test.txt"
# What an `alembic init -t async` project needs, with one async driver per database.
ASYNC_ONLY_PACKAGES = ("alembic", "SQLAlchemy", "greenlet", "asyncpg", "aiosqlite", "asyncmy")
SYNC_DRIVER_MODULES = ("psycopg", "psycopg2", "pg8000", "pymysql", "MySQLdb",
                       "mysql.connector", "mariadb")
LOST = "lost the database lock"


# --- a virtualenv with async drivers only --------------------------------------------------

def _build_venv(folder: Path) -> Path:
    python = folder / "bin" / "python"
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-c", PINS, *ASYNC_ONLY_PACKAGES], check=True, capture_output=True,
                   text=True, timeout=600)
    return python


@pytest.fixture(scope="session")
def async_only_python(request: pytest.FixtureRequest,
                      tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a virtualenv holding Alembic, SQLAlchemy and the async drivers only
    (pinned by requirements/test.txt), built once and kept in pytest's cache (in the run's
    temporary folder under ``-p no:cacheprovider``)."""
    digest = hashlib.sha256(PINS.read_bytes() + repr(ASYNC_ONLY_PACKAGES).encode()
                            ).hexdigest()[:12]
    name = f"async-only-venv-{digest}"
    cache = getattr(request.config, "cache", None)
    folder = (Path(cache.mkdir(name)) if cache is not None
              else tmp_path_factory.getbasetemp().parent / name)
    folder.mkdir(parents=True, exist_ok=True)
    python, ready = folder / "venv" / "bin" / "python", folder / "ready"
    with open(folder / "lock", "w") as lock:  # xdist workers build it once between them
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            try:
                _build_venv(folder / "venv")
            except subprocess.CalledProcessError as error:
                pytest.fail(f"cannot build the async-only virtualenv: {error.stderr}")
            ready.write_text("ok\n")
    found = run([python, "-c", "import importlib.util as u, sys; print(' '.join(m for m in "
                 f"{SYNC_DRIVER_MODULES!r} if u.find_spec(m.split('.')[0])))"],
                cwd=folder, check=True).stdout.strip()
    assert found == "", f"the async-only virtualenv holds synchronous drivers: {found}"
    return python


ASYNC_URLS: dict[str, Callable[[Database], str]] = {
    "sqlite": lambda db: f"sqlite+aiosqlite:///{db.url.removeprefix('sqlite:///')}",
    "postgresql": lambda db: db.url.replace("+psycopg", "+asyncpg"),
    "mariadb": lambda db: (f"mysql+asyncmy://{MARIADB_USER}@{MARIADB_HOST}:{MARIADB_PORT}/"
                           f"{db.name}"),
}


def _ensure_api(python: Path, worktree: Worktree) -> subprocess.CompletedProcess[str]:
    script = ("from alembic_autocopy import ensure_database_current\n"
              "report = ensure_database_current()\n"
              "print('brought in', len(report.brought_in), 'applied', len(report.applied))\n")
    return run([python, "-c", script], cwd=worktree.path, check=False)


@pytest.mark.slow
def test_async_only_projects_are_repaired_every_way(
        tmp_path: Path, any_db: Database, async_only_python: Path) -> None:
    db = dataclasses.replace(any_db, async_url=ASYNC_URLS[any_db.backend](any_db))
    repo = make_repo(tmp_path, db, env="async")
    python = async_only_python

    def alembic(worktree: Worktree, *args: str) -> subprocess.CompletedProcess[str]:
        return run([python, "-m", "alembic", *args], cwd=worktree.path, check=True)

    def autocopy(worktree: Worktree, *args: str) -> subprocess.CompletedProcess[str]:
        return run([python, "-m", "alembic_autocopy", *args], cwd=worktree.path, check=False)

    alembic(repo.main, "upgrade", "head")
    a, b = repo.add_worktree("a"), repo.add_worktree("b")

    def sibling_applies(rev: str, parent: str) -> None:
        a.write_migration(rev, down=parent, message=f"sibling {rev}")
        alembic(a, "upgrade", "head")
        assert repo.applied_versions() == {rev}

    def repaired(rev: str) -> None:
        assert (b.versions / f"{rev}_sibling_{rev}.py").exists()
        assert repo.applied_versions() == {rev}

    # 1. the --auto-upgrade hook: a merge brings a1 (committed on a), the database has a2
    installed = autocopy(b, "install-hooks", "--auto-upgrade")
    assert installed.returncode == 0, installed.stderr
    sibling_applies("a00000000001", BASE_REV)
    a.commit("a: a1")
    sibling_applies("a00000000002", "a00000000001")
    merged = b.git("merge", "--no-edit", "a")
    assert "alembic-autocopy: brought in 1 migration(s)" in merged.stdout + merged.stderr, (
        merged.stdout + merged.stderr)
    repaired("a00000000002")

    # 2. upgrade
    sibling_applies("a00000000003", "a00000000002")
    upgraded = autocopy(b, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "synchronous driver" not in upgraded.stderr
    repaired("a00000000003")

    # 3. run -- alembic upgrade heads
    sibling_applies("a00000000004", "a00000000003")
    wrapped = autocopy(b, "run", "--", str(python), "-m", "alembic", "upgrade", "heads")
    assert wrapped.returncode == 0, wrapped.stdout + wrapped.stderr
    assert "alembic-autocopy: brought in 1 migration(s)" in wrapped.stderr
    repaired("a00000000004")

    # 4. the Python API
    sibling_applies("a00000000005", "a00000000004")
    api = _ensure_api(python, b)
    assert api.returncode == 0, api.stderr
    assert "brought in 1 applied 0" in api.stdout
    repaired("a00000000005")
    assert "a00000000005 (head)" in alembic(b, "current").stdout  # plain Alembic works again


# --- a lock that cannot lapse unnoticed ----------------------------------------------------

SLOW, SECOND, THIRD = "5100000000a1", "5100000000a2", "5100000000a3"
LOG_TABLE = "lock_log"
WAITING = "waiting for another upgrade of this database"


def _logging_migration(worktree: Worktree, rev: str, parent: str, *body: str) -> None:
    """A migration that records each run of its upgrade() in LOG_TABLE (after ``body``)."""
    path = worktree.write_migration(rev, down=parent, message=f"m {rev}")
    text = path.read_text()
    anchor = "def upgrade() -> None:\n"
    lines = "".join(f"    op.execute({statement!r})\n" for statement in (
        *body, f"INSERT INTO {LOG_TABLE} (rev) VALUES ('{rev}')"))
    path.write_text(text.replace(anchor, anchor + lines, 1))


def _gated_chain(tmp_path: Path, db: Database, gate: str) -> tuple[Repo, Worktree, Worktree]:
    """main holds base + SLOW (which runs ``gate``: it waits for a lock the test holds) +
    SECOND + THIRD; two worktrees of it; the database is at base."""
    repo = make_repo(tmp_path, db)
    db.execute(f"CREATE TABLE {LOG_TABLE} (rev VARCHAR(32) NOT NULL)")
    repo.main.alembic("upgrade", "head", check=True)
    _logging_migration(repo.main, SLOW, BASE_REV, "CREATE TABLE slow_one (id INTEGER)", gate)
    _logging_migration(repo.main, SECOND, SLOW, "CREATE TABLE second_one (id INTEGER)")
    _logging_migration(repo.main, THIRD, SECOND, "CREATE TABLE third_one (id INTEGER)")
    repo.main.commit("a chain whose first migration waits at a gate")
    return repo, repo.add_worktree("one"), repo.add_worktree("two")


def _start_upgrade(worktree: Worktree) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "alembic_autocopy", "upgrade",
                             "--lock-timeout", "120"], cwd=worktree.path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=merged_env(None))


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str],
              what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            stdout, stderr = process.communicate()
            pytest.fail(f"the first upgrade ended before {what}: {stdout}{stderr}")
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)


class _Lines:
    """Every line a stream gives, read by a thread of its own (never blocks the test)."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, text: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"never said {text!r}: {self.text()}"
            time.sleep(0.05)

    def text(self) -> str:
        return "".join(self.lines)

    def join(self) -> str:
        self._thread.join(timeout=120)
        return self.text()


@contextlib.contextmanager
def _reaped(*processes: subprocess.Popen[str]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


@contextlib.contextmanager
def _gate_held(db: Database, take: str) -> Iterator[Any]:
    """A connection of the test's own holding the gate lock (``take``)."""
    engine = sa.create_engine(db.url, poolclass=sa.pool.NullPool,
                              isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(take))
            yield connection
    finally:
        engine.dispose()


def _run_the_race(repo: Repo, db: Database, first: subprocess.Popen[str],
                  two: Worktree, open_gate: Callable[[], None]) -> None:
    """The first run's lock connection is gone and its migration waits at the gate: start
    a second run, see it wait for the first one's migration lock, open the gate. Every
    migration then runs once; the first run stops, saying it lost the lock."""
    second = _start_upgrade(two)
    with _reaped(second):
        said = _Lines(second.stderr)
        try:
            said.wait_for(WAITING)  # for the first run's migration lock
        finally:
            open_gate()
        out1, err1 = first.communicate(timeout=120)
        second.wait(timeout=120)
        err2 = said.join()
        assert second.stdout is not None
        out2 = second.stdout.read()
    assert first.returncode == 1, out1 + err1
    assert LOST in err1 and "nothing further was applied" in err1, err1
    assert "Traceback" not in err1 + err2
    assert second.returncode == 0, out2 + err2
    assert "already exists" not in err2 and "duplicate" not in err2.lower()
    runs = collections.Counter(row[0] for row in db.execute(f"SELECT rev FROM {LOG_TABLE}"))
    assert runs == {SLOW: 1, SECOND: 1, THIRD: 1}
    assert repo.applied_versions() == {THIRD}
    assert {"slow_one", "second_one", "third_one"} <= db.tables()


def _lock_key_text(db: Database) -> str:
    return locking.lock_key(db.name, Endpoint(url=None))  # reads only the version table


@pytest.mark.slow
def test_postgresql_lock_ended_by_idle_session_timeout_stops_the_run(
        tmp_path: Path, postgresql_db: Database) -> None:
    db = postgresql_db
    gate = 4242
    repo, one, two = _gated_chain(tmp_path, db, f"SELECT pg_advisory_xact_lock({gate})")
    key = locking.advisory_key(_lock_key_text(db)) & 0xFFFFFFFFFFFFFFFF
    lock_held = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                 f"AND classid::bigint = {key >> 32} AND objid::bigint = "
                 f"{key & 0xFFFFFFFF} AND objsubid = 1")
    at_gate = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
               "AND query LIKE 'SELECT pg_advisory_xact_lock%' AND wait_event_type = 'Lock'")

    with _gate_held(db, f"SELECT pg_advisory_lock({gate})") as gate_connection:
        # Sessions opened from now on end after 2 idle seconds: the first run's lock
        # connection idles while its migration waits at the gate.
        db.execute(f"ALTER DATABASE {db.name} SET idle_session_timeout = '2s'")
        first = _start_upgrade(one)
        with _reaped(first):
            _wait_for(lambda: db.execute(at_gate)[0][0] == 1, first, "the gate")
            _wait_for(lambda: db.execute(lock_held)[0][0] == 0, first,
                      "the end of the lock connection")
            db.execute(f"ALTER DATABASE {db.name} RESET idle_session_timeout")
            _run_the_race(repo, db, first, two, lambda: gate_connection.execute(
                sa.text(f"SELECT pg_advisory_unlock({gate})")))


@pytest.mark.slow
def test_mariadb_lock_connection_killed_mid_upgrade_stops_the_run(
        tmp_path: Path, mariadb_db: Database) -> None:
    db = mariadb_db
    gate = f"gate-{db.name}"
    repo, one, two = _gated_chain(tmp_path, db, f"SELECT GET_LOCK('{gate}', 120)")
    name = locking.mysql_lock_name(_lock_key_text(db))
    at_gate = ("SELECT count(*) FROM information_schema.processlist "
               f"WHERE info LIKE 'SELECT GET_LOCK(''{gate}''%'")

    with _gate_held(db, f"SELECT GET_LOCK('{gate}', 0)") as gate_connection:
        first = _start_upgrade(one)
        with _reaped(first):
            _wait_for(lambda: db.execute(at_gate)[0][0] == 1, first, "the gate")
            ((holder,),) = db.execute(f"SELECT IS_USED_LOCK('{name}')")
            assert holder is not None
            db.execute(f"KILL {int(holder)}")  # the first run's lock connection
            _run_the_race(repo, db, first, two, lambda: gate_connection.execute(
                sa.text(f"SELECT RELEASE_LOCK('{gate}')")))


# --- the SQLite lock is the file's, whatever the path --------------------------------------

def test_sqlite_lock_file_is_named_by_the_resolved_path(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    real = tmp_path / "data" / "db.sqlite"
    real.parent.mkdir()
    (tmp_path / "alias").symlink_to(real.parent)
    (tmp_path / "link.sqlite").symlink_to(real)
    spellings = [real, tmp_path / "alias" / "db.sqlite", tmp_path / "link.sqlite",
                 tmp_path / "data" / ".." / "data" / "db.sqlite"]
    files = {locking.sqlite_lock_file(Endpoint(make_url(f"sqlite:///{path}")))
             for path in spellings}
    assert files == {Path(f"{real.resolve()}{locking.LOCK_FILE_SUFFIX}")}


@pytest.mark.slow
def test_symlinked_sqlite_path_shares_the_lock_under_load(tmp_path: Path) -> None:
    """8 processes, 4 worktrees; half the worktrees reach the database file through a
    symlink: 3 rounds, every process exits 0 and every migration runs once."""
    sys.path.insert(0, str(CHECKOUT / "bench"))
    import stress

    for number in range(3):
        (tmp_path / f"db-{number}").mkdir()
        with temporary_database("sqlite", tmp_path / f"db-{number}") as db:
            result = stress.run_round(db, tmp_path / f"round-{number}", processes=8,
                                      worktrees=4, symlinked=True)
        assert result.exit_codes == [0] * 8, result.errors
        assert result.problems == []


def test_a_lock_timeout_names_the_database_and_the_setting(
        tmp_path: Path, postgresql_db: Database) -> None:
    repo = make_repo(tmp_path, postgresql_db)
    repo.main.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    a.write_migration("a00000000001", down=BASE_REV)
    a.alembic("upgrade", "head", check=True)
    b = repo.main
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from alembic_autocopy.effects import database, locking
        from alembic_autocopy.effects.project import load_project

        state = database.read_state(load_project())
        with locking.database_lock(state.endpoints, locking.Waiting(30)):
            print("locked", flush=True)
            sys.stdin.readline()
        """)], cwd=a.path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=merged_env(None))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = b.autocopy("upgrade", "--lock-timeout", "1")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgresql_db.name}" in error
    assert "lock_timeout = 1 s" in error
    assert "--lock-timeout" in result.stderr


def test_a_removed_sqlite_lock_file_is_a_lost_lock(tmp_path: Path) -> None:
    """Someone deleting the lock file lets another run lock a new one: the holder's check
    (before each migration) says the lock is lost."""
    path = tmp_path / f"db.sqlite{locking.LOCK_FILE_SUFFIX}"
    held = locking.HeldLocks(locking.Waiting(1))
    lock = locking.FileLock(path, transient=True)
    assert lock.try_acquire()
    held.locks["sqlite"] = lock
    held.verify()
    path.unlink()
    other = locking.FileLock(path, transient=True)
    assert other.try_acquire()  # the second run is in
    with pytest.raises(locking.LockLost, match="lost the database lock") as raised:
        list(held.guard_steps(["a migration"]))
    assert str(path) in raised.value.message
    lock.release()
    assert path.exists(), "the stale holder removed the new holder's lock file"
    assert not locking.FileLock(path, transient=True).try_acquire()
    other.release()
    assert not path.exists()
