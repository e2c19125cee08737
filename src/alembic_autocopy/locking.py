"""Locks that make parallel repairs safe: one per database, one per worktree.

Alembic takes no lock (sqlalchemy/alembic issue 633): two upgrades started at once by two
worktrees' dev servers race on ``alembic_version`` and the DDL, and on MariaDB, which has no
transactional DDL, one can be left half applied. The database lock is held from BEFORE the
applied revisions are read to the end of the upgrade, so the second process reads what the
first one did and has nothing left to race on:

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a dedicated connection;
  advisory locks are scoped to one database, the key comes from the database's name and its
  version table.
- MariaDB/MySQL: ``GET_LOCK`` on a dedicated connection (server-wide, so the name includes
  the database).
- SQLite: an exclusive ``flock`` on a file beside the database file, removed on release.
- Other dialects: no lock (a warning says so).

Every lock is polled (never a blocking call): the wait can print "waiting for ..." after a
second, ends with a clear error after ``lock_timeout`` seconds, and Ctrl-C interrupts it.
A lock dies with its process (the server ends the session, the kernel drops the flock), so a
killed run never leaves a lock behind.

The per-worktree lock is a ``flock`` on a file in the worktree's own git folder, held while
the manifest, the copies and the managed ``.gitignore`` change.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from alembic_autocopy.errors import AutocopyError, DatabaseError
from alembic_autocopy.redaction import mask_passwords

if TYPE_CHECKING:
    from alembic_autocopy.database import Endpoint

WAITING_FOR_DATABASE = "waiting for another upgrade of this database…"
WAITING_FOR_WORKTREE = "waiting for another alembic-autocopy run in this worktree…"
NOTICE_AFTER = 1.0  # seconds of waiting before saying so
_FIRST_POLL, _LAST_POLL = 0.01, 0.25  # seconds between attempts, growing
LOCK_FILE_SUFFIX = ".alembic-autocopy.lock"
WORKTREE_LOCK_NAME = "alembic-autocopy/lock"
_KEY_PREFIX = "alembic-autocopy"

Notify = Callable[[str], None]
Clock = Callable[[], float]


class LockTimeout(AutocopyError):
    """Another process held a lock for longer than ``lock_timeout`` (exit 1)."""


def print_notice(message: str) -> None:
    """Default ``notify``: one line on stderr (stdout may carry --json)."""
    print(message, file=sys.stderr, flush=True)


class _Lock(Protocol):
    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...

    def holder(self) -> str | None: ...


@dataclass
class Waiting:
    """How long to wait for a lock and whom to tell."""

    timeout: float
    notify: Notify = print_notice
    clock: Clock = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def acquire(lock: _Lock, waiting: Waiting, message: str,
            timed_out: Callable[[float, str | None], AutocopyError]) -> None:
    """Poll ``lock`` until it is ours; say ``message`` once after NOTICE_AFTER seconds;
    raise ``timed_out(waited, holder)`` after ``waiting.timeout`` seconds."""
    start = waiting.clock()
    announced = False
    pause = _FIRST_POLL
    while not lock.try_acquire():
        waited = waiting.clock() - start
        if waited >= waiting.timeout:
            raise timed_out(waited, lock.holder())
        if not announced and waited >= NOTICE_AFTER:
            holder = lock.holder()
            waiting.notify(message + (f" (held by {holder})" if holder else ""))
            announced = True
        waiting.sleep(min(pause, max(0.0, waiting.timeout - waited)))
        pause = min(pause * 2, _LAST_POLL)


# --- file locks ----------------------------------------------------------------------------

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock_fd(descriptor: int) -> bool:
        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock_fd(descriptor: int) -> None:
        with contextlib.suppress(OSError):
            msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock_fd(descriptor: int) -> bool:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock_fd(descriptor: int) -> None:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


def _owner_line() -> str:
    return f"process {os.getpid()} on {socket.gethostname()}"


class FileLock:
    """An exclusive lock on ``path`` (``flock``: released by the kernel if the process dies).

    ``transient``: the file is removed on release, so nothing lingers beside a database
    file. A waiter may then hold a lock on a file that is no longer there; it checks, after
    locking, that the path still names the file it locked, and tries again otherwise.
    """

    def __init__(self, path: Path, transient: bool = False) -> None:
        self.path = path
        self.transient = transient
        self._descriptor: int | None = None

    def try_acquire(self) -> bool:
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                                 0o644)
        except OSError as error:
            raise AutocopyError(
                f"cannot create the lock file {self.path}: {error.strerror or error}",
                hint="alembic-autocopy needs to write in that folder to serialize upgrades",
            ) from error
        if not _try_lock_fd(descriptor):
            os.close(descriptor)
            return False
        if self.transient and not self._still_named(descriptor):
            _unlock_fd(descriptor)
            os.close(descriptor)
            return False
        with contextlib.suppress(OSError):  # who holds it: for the messages of waiters
            os.ftruncate(descriptor, 0)
            os.write(descriptor, (_owner_line() + "\n").encode())
        self._descriptor = descriptor
        return True

    def _still_named(self, descriptor: int) -> bool:
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(descriptor)
        return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is None:
            return
        if self.transient:  # unlink while still locked: a waiter then sees a new file
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            _unlock_fd(descriptor)
        os.close(descriptor)

    def holder(self) -> str | None:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None
        return text.splitlines()[0] if text else None


@contextlib.contextmanager
def holding(lock: _Lock, waiting: Waiting, message: str,
            timed_out: Callable[[float, str | None], AutocopyError]) -> Iterator[None]:
    acquire(lock, waiting, message, timed_out)
    try:
        yield
    finally:
        lock.release()


def worktree_lock_path(manifest_path: Path) -> Path:
    """The worktree lock lives beside the manifest (the worktree's own git folder)."""
    return manifest_path.parent / Path(WORKTREE_LOCK_NAME).name


@contextlib.contextmanager
def worktree_lock(path: Path, waiting: Waiting) -> Iterator[None]:
    """Hold this worktree's lock: one process at a time changes its copies and manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def timed_out(waited: float, holder: str | None) -> AutocopyError:
        return LockTimeout(
            f"gave up after {waited:.0f} s: another alembic-autocopy run is changing this "
            f"worktree ({holder or 'lock file ' + str(path)})",
            hint="let it finish, then run again; --lock-timeout SECONDS waits longer")

    with holding(FileLock(path), waiting, WAITING_FOR_WORKTREE, timed_out):
        yield


# --- database locks -----------------------------------------------------------------------

def lock_key(database: str, endpoint: Endpoint) -> str:
    """Stable text naming one database and version table (hashed into each dialect's key)."""
    table = endpoint.version_table
    if endpoint.version_table_schema:
        table = f"{endpoint.version_table_schema}.{table}"
    return f"{_KEY_PREFIX}\0{database}\0{table}"


def advisory_key(text: str) -> int:
    """A signed 64-bit key for ``pg_try_advisory_lock``."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def mysql_lock_name(text: str) -> str:
    """A GET_LOCK name: at most 64 characters, the same for every client of the server."""
    return f"{_KEY_PREFIX}:{hashlib.sha256(text.encode()).hexdigest()[:40]}"


class ServerLock:
    """A session-level lock taken on a dedicated connection (PostgreSQL or MariaDB/MySQL).

    The connection is the lock: it is closed on release, and a killed process's session
    (and lock) ends with its socket.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.backend = endpoint.url.get_backend_name()
        self._owned_engine: Any = None
        self._connection: Any = _dedicated_connection(endpoint, self)
        if self.backend == "postgresql":
            database = self._scalar("SELECT current_database()")
            self.key: int | str = advisory_key(lock_key(str(database), endpoint))
        else:
            database = self._scalar("SELECT DATABASE()")
            self.key = mysql_lock_name(lock_key(str(database), endpoint))

    def _scalar(self, sql: str, **params: Any) -> Any:
        from sqlalchemy import exc, text

        where = self.endpoint.url.render_as_string(hide_password=True)
        hint = "check that the database server runs, then run again"
        if self._connection is None:
            raise DatabaseError(f"the lock connection to {where} was lost", hint=hint)
        try:
            return self._connection.execute(text(sql), params).scalar()
        except exc.SQLAlchemyError as error:  # e.g. the server went away while we waited
            self.release()
            original = getattr(error, "orig", None) or error
            first = (str(original).strip().splitlines() or [type(original).__name__])[0]
            raise DatabaseError(f"the lock connection to {where} failed: "
                                f"{mask_passwords(first)}", hint=hint) from error

    def try_acquire(self) -> bool:
        if self.backend == "postgresql":
            return bool(self._scalar("SELECT pg_try_advisory_lock(:key)", key=self.key))
        return bool(self._scalar("SELECT GET_LOCK(:key, 0)", key=self.key) == 1)

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        unlock = ("SELECT pg_advisory_unlock(:key)" if self.backend == "postgresql"
                  else "SELECT RELEASE_LOCK(:key)")
        with contextlib.suppress(Exception):  # the connection may be gone: the lock too
            from sqlalchemy import text

            connection.execute(text(unlock), {"key": self.key})
        with contextlib.suppress(Exception):
            connection.invalidate()  # really close it: a pooled session would keep locks
            connection.close()
        if self._owned_engine is not None:
            self._owned_engine.dispose()

    def holder(self) -> str | None:
        with contextlib.suppress(Exception):
            if self.backend == "postgresql":
                unsigned = int(self.key) & 0xFFFFFFFFFFFFFFFF
                pid = self._scalar(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1",
                    high=unsigned >> 32, low=unsigned & 0xFFFFFFFF)
                return f"PostgreSQL backend pid {pid}" if pid is not None else None
            connection_id = self._scalar("SELECT IS_USED_LOCK(:key)", key=self.key)
            return f"connection id {connection_id}" if connection_id is not None else None
        return None


# Async drivers cannot serve a plain blocking connection: their sync siblings can.
_SYNC_DRIVERS: dict[str, tuple[tuple[str, str], ...]] = {
    "asyncpg": (("psycopg", "psycopg"), ("psycopg2", "psycopg2"), ("pg8000", "pg8000")),
    "psycopg_async": (("psycopg", "psycopg"),),
    "aiomysql": (("pymysql", "pymysql"), ("mysqldb", "MySQLdb")),
    "asyncmy": (("pymysql", "pymysql"), ("mysqldb", "MySQLdb")),
}


def sync_url(url: Any) -> Any:
    """``url`` with a synchronous driver (for the lock's own connection)."""
    driver = url.get_driver_name()
    choices = _SYNC_DRIVERS.get(driver)
    if choices is None:
        return url
    for name, module in choices:
        if importlib.util.find_spec(module) is not None:
            return url.set(drivername=f"{url.get_backend_name()}+{name}")
    wanted = " or ".join(module for _name, module in choices)
    raise DatabaseError(
        f"the database lock needs a synchronous driver beside {driver}: none is installed",
        hint=f"install {wanted} (pip install {choices[0][1]})")


def _dedicated_connection(endpoint: Endpoint, lock: ServerLock) -> Any:
    """A connection of our own, outside env.py's transaction, in autocommit mode."""
    import sqlalchemy as sa

    engine = endpoint.engine
    try:
        if engine is None or getattr(engine.dialect, "is_async", False):
            engine = sa.create_engine(sync_url(endpoint.url), poolclass=sa.pool.NullPool)
            lock._owned_engine = engine
        return engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except sa.exc.SQLAlchemyError as error:
        original = getattr(error, "orig", None) or error
        where = endpoint.url.render_as_string(hide_password=True)
        first = (str(original).strip().splitlines() or [type(original).__name__])[0]
        raise DatabaseError(f"cannot open the lock connection to {where}: "
                            f"{mask_passwords(first)}",
                            hint="check that the database server runs") from error


def sqlite_lock_file(endpoint: Endpoint) -> Path | None:
    """The lock file beside a SQLite database file; None for an in-memory database."""
    database = endpoint.url.database or ""
    query = dict(endpoint.url.query)
    if str(query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):
        database = database[len("file:"):].split("?", 1)[0]
        if str(query.get("mode", "")) == "memory":
            return None
    if database in ("", ":memory:"):
        return None
    return Path(os.path.abspath(database + LOCK_FILE_SUFFIX))


def _identity(endpoint: Endpoint) -> str:
    """What makes two endpoints the same lock (an env.py may reach one database twice)."""
    url = endpoint.url
    if url.get_backend_name() == "sqlite":
        return f"sqlite:{sqlite_lock_file(endpoint)}"
    return "\0".join(str(part) for part in (
        url.get_backend_name(), url.host, url.port, url.database, url.username,
        endpoint.version_table_schema, endpoint.version_table))


@contextlib.contextmanager
def database_lock(endpoints: Sequence[Endpoint], waiting: Waiting) -> Iterator[list[str]]:
    """Hold the upgrade lock of every database env.py reaches (in a fixed order, so two
    processes never wait for each other). Yields notes (e.g. a dialect without a lock)."""
    unique = {_identity(endpoint): endpoint for endpoint in endpoints}
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        for identity in sorted(unique):
            endpoint = unique[identity]
            where = endpoint.url.render_as_string(hide_password=True)

            def timed_out(waited: float, holder: str | None, where: str = where
                          ) -> AutocopyError:
                return LockTimeout(
                    f"gave up after {waited:.0f} s: another upgrade of {where} still holds "
                    f"its lock" + (f" ({holder})" if holder else ""),
                    hint="let it finish (or stop it), then run again; --lock-timeout SECONDS "
                         "(or lock_timeout in [tool.alembic-autocopy]) waits longer")

            lock = _lock_for(endpoint)
            if lock is None:
                if endpoint.url.get_backend_name() != "sqlite":
                    notes.append(f"no upgrade lock for {endpoint.url.get_backend_name()} "
                                 f"({where}): parallel upgrades of it are not serialized")
                continue
            if isinstance(lock, ServerLock):
                stack.callback(lock.release)  # the connection is open even if never locked
            stack.enter_context(holding(lock, waiting, WAITING_FOR_DATABASE, timed_out))
        yield notes


def remove_stale_lock_files(endpoints: Sequence[Endpoint]) -> None:
    """Remove a SQLite lock file a killed run left behind (a run with nothing to do takes
    no lock, so it would otherwise stay until the next real upgrade). A held one stays."""
    for endpoint in endpoints:
        if endpoint.url.get_backend_name() != "sqlite":
            continue
        path = sqlite_lock_file(endpoint)
        if path is None or not path.exists():
            continue
        lock = FileLock(path, transient=True)
        with contextlib.suppress(AutocopyError):
            if lock.try_acquire():
                lock.release()


def _lock_for(endpoint: Endpoint) -> _Lock | None:
    backend = endpoint.url.get_backend_name()
    if backend == "sqlite":
        path = sqlite_lock_file(endpoint)
        return FileLock(path, transient=True) if path is not None else None
    if backend in ("postgresql", "mysql", "mariadb"):
        return ServerLock(endpoint)
    return None
