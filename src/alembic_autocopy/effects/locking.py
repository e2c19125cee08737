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
- SQLite: an exclusive ``flock`` on a file beside the database file (its fully resolved
  path: a symlink or another spelling of the path shares the lock), removed on release.
- Other dialects: no lock (a warning says so).

The dedicated connection goes through the project's own driver: a synchronous engine
directly, an asyncio one (asyncpg, aiomysql, asyncmy, psycopg's async mode) through a private
event loop in a worker thread. No second driver is needed.

A lock that cannot lapse unnoticed. The dedicated connection sits idle while migrations run;
``idle_session_timeout``, ``wait_timeout``, a proxy or a network blip can end it, and with it
the lock. So the migrations themselves are guarded twice (``HeldLocks.migrating``):

- the MIGRATION lock: right before Alembic reads the heads, env.py's own migration connection
  takes a second lock (PostgreSQL: a transaction-level advisory lock when the migrations run
  in one transaction, so it ends exactly at commit or rollback; else, and on MariaDB, a
  session lock released after the last commit). A connection that dies takes its
  uncommitted work with it, so no other process migrates while this one's migrations run;
- before each migration and before the final commit, the holder checks that the dedicated
  lock is still its own (``pg_locks`` / ``IS_USED_LOCK() = CONNECTION_ID()`` / the lock
  file still named); a lost lock raises ``LockLost``: nothing further is applied, and the
  open transaction (PostgreSQL: every migration of this run) is rolled back.

Every lock is polled (never a blocking call): the wait can print "waiting for ..." after a
second, ends with a clear error after ``lock_timeout`` seconds, and Ctrl-C interrupts it.
A lock dies with its process (the server ends the session, the kernel drops the flock), so a
killed run never leaves a lock behind.

The per-worktree lock is a ``flock`` on a file in the worktree's own git folder, held while
the manifest, the copies and the managed ``.gitignore`` change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from alembic_autocopy.core.errors import AutocopyError, DatabaseError
from alembic_autocopy.core.redaction import mask_passwords, mask_url

if TYPE_CHECKING:
    from alembic_autocopy.effects.database import Endpoint

# Imported inside functions, as each saves >= 5 ms where skipped: SQLAlchemy and the database
# module only when a lock is taken.

WAITING_FOR_DATABASE = "waiting for another upgrade of this database…"
WAITING_FOR_WORKTREE = "waiting for another alembic-autocopy run in this worktree…"
NOTICE_AFTER = 1.0  # seconds of waiting before saying so
_FIRST_POLL, _LAST_POLL = 0.01, 0.25  # seconds between attempts, growing
LOCK_FILE_SUFFIX = ".alembic-autocopy.lock"
WORKTREE_LOCK_NAME = "alembic-autocopy/lock"
_KEY_PREFIX = "alembic-autocopy"

LOST_HINT = ("what was committed before stays, the rest was rolled back; run "
             "`alembic-autocopy upgrade` again (docs/safety.md: the database lock)")

Notify = Callable[[str], None]
Clock = Callable[[], float]


T = TypeVar("T")


class LockTimeout(AutocopyError):
    """Another process held a lock for longer than ``lock_timeout`` (exit 1)."""


class LockLost(DatabaseError):
    """The database lock ended while this run held it (exit 1): nothing further applied."""


def print_notice(message: str) -> None:
    """Default ``notify``: one line on stderr (stdout may carry --json)."""
    print(message, file=sys.stderr, flush=True)


class _Lock(Protocol):
    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...

    def holder(self) -> str | None: ...


class Waiting(NamedTuple):
    """How long to wait for a lock and whom to tell."""

    timeout: float
    notify: Notify = print_notice
    clock: Clock = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def acquire(lock: _Lock, waiting: Waiting, message: str,
            timed_out: Callable[[float, str | None], AutocopyError],
            tick: Callable[[], None] | None = None) -> None:
    """Poll ``lock`` until it is ours; say ``message`` once after NOTICE_AFTER seconds;
    raise ``timed_out(waited, holder)`` after ``waiting.timeout`` seconds. ``tick`` runs
    before each attempt (e.g. checking that the locks already held are still ours)."""
    start = waiting.clock()
    announced = False
    pause = _FIRST_POLL
    while True:
        if tick is not None:
            tick()
        if lock.try_acquire():
            return
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
        # Unlink while still locked (a waiter then sees a new file), unless the name now
        # belongs to another run's lock file (ours was removed or replaced meanwhile).
        if self.transient:
            with contextlib.suppress(OSError):
                if self._still_named(descriptor):
                    os.unlink(self.path)
        with contextlib.suppress(OSError):
            _unlock_fd(descriptor)
        os.close(descriptor)

    def verify(self) -> None:
        """Raise LockLost when the lock file was removed or replaced meanwhile (another run
        then locks a new file: the lock is no longer exclusive)."""
        descriptor = self._descriptor
        if descriptor is not None and self.transient and not self._still_named(descriptor):
            raise LockLost(f"lost the database lock: its lock file {self.path} was removed "
                           "or replaced while this run held it; nothing further was applied",
                           hint=LOST_HINT)

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


_MIGRATING = "\0migrating"  # the migration lock's key: the database lock's, plus this


def _masked(url: Any) -> str:
    return mask_url(url)  # the password and secret query parameters hidden


def _first_line(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    first = (str(original).strip().splitlines() or [type(original).__name__])[0]
    return mask_passwords(first)


class _Connection(Protocol):
    def scalar(self, sql: str, params: dict[str, Any]) -> Any: ...

    def close(self) -> None: ...


class _SyncConnection:
    """An autocommit connection of a synchronous engine (env.py's own, or one of ours)."""

    def __init__(self, engine: Any, owned: bool) -> None:
        self._engine = engine if owned else None
        self._connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def scalar(self, sql: str, params: dict[str, Any]) -> Any:
        from sqlalchemy import text

        return self._connection.execute(text(sql), params).scalar()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.invalidate()  # really close it: a pooled session keeps locks
            self._connection.close()
        if self._engine is not None:
            self._engine.dispose()


class _AsyncConnection:
    """An autocommit connection through the project's asyncio driver (asyncpg, aiomysql,
    asyncmy, ...), driven from synchronous code: its own event loop runs in a worker thread
    and each statement is handed to it. No synchronous driver is needed."""

    def __init__(self, endpoint: Endpoint) -> None:
        import sqlalchemy as sa
        from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="alembic-autocopy database lock")
        self._thread.start()
        env_engine = endpoint.engine
        # env.py's own engine keeps its connect_args (TLS, timeouts...); a pooled one could
        # hand out a connection made on env.py's (closed) event loop: use a pool-less one.
        if env_engine is not None and isinstance(env_engine.pool, sa.pool.NullPool):
            self._engine: Any = AsyncEngine(env_engine)
            self._owned = False
        else:
            self._engine = create_async_engine(endpoint.url, poolclass=sa.pool.NullPool)
            self._owned = True
        self._connection: Any = None
        try:
            self._connection = self._run(self._connect())
        except BaseException:
            self._stop()
            raise

    async def _connect(self) -> Any:
        connection = await self._engine.connect()
        return await connection.execution_options(isolation_level="AUTOCOMMIT")

    def _run(self, awaitable: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(awaitable, self._loop).result()

    def scalar(self, sql: str, params: dict[str, Any]) -> Any:
        from sqlalchemy import text

        return self._run(self._connection.scalar(text(sql), params))

    def close(self) -> None:
        try:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    self._run(self._connection.invalidate())
                with contextlib.suppress(Exception):
                    self._run(self._connection.close())
            if self._owned:
                with contextlib.suppress(Exception):
                    self._run(self._engine.dispose())
        finally:
            self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


class ServerLock:
    """A session-level lock taken on a dedicated connection (PostgreSQL or MariaDB/MySQL).

    The connection is the lock: it is closed on release, and a killed process's session
    (and lock) ends with its socket.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.backend = endpoint.url.get_backend_name()
        self.where = _masked(endpoint.url)
        self._guard = threading.Lock()  # one statement at a time on the connection
        self._connection: _Connection | None = _dedicated_connection(endpoint)
        self._held = False
        if self.backend == "postgresql":
            database = self._scalar("SELECT current_database()")
            self.key_text = lock_key(str(database), endpoint)
            self.key: int | str = advisory_key(self.key_text)
        else:
            database = self._scalar("SELECT DATABASE()")
            self.key_text = lock_key(str(database), endpoint)
            self.key = mysql_lock_name(self.key_text)

    def _scalar(self, sql: str, **params: Any) -> Any:
        hint = "check that the database server runs, then run again"
        with self._guard:
            connection = self._connection
            if connection is None:
                raise DatabaseError(f"the lock connection to {self.where} was lost", hint=hint)
            try:
                return connection.scalar(sql, params)
            except Exception as error:  # e.g. the server went away while we waited
                if self._held:
                    raise LockLost(self._lost(_first_line(error)), hint=LOST_HINT) from error
                self._close()
                raise DatabaseError(f"the lock connection to {self.where} failed: "
                                    f"{_first_line(error)}", hint=hint) from error

    def _lost(self, why: str) -> str:
        return (f"lost the database lock of {self.where} while upgrading ({why}); nothing "
                "further was applied")

    def try_acquire(self) -> bool:
        if self.backend == "postgresql":
            got = bool(self._scalar("SELECT pg_try_advisory_lock(:key)", key=self.key))
        else:
            got = bool(self._scalar("SELECT GET_LOCK(:key, 0)", key=self.key) == 1)
        self._held = got
        return got

    def verify(self) -> None:
        """Raise LockLost unless the lock is still this connection's (it may have been
        ended by ``idle_session_timeout``, ``wait_timeout``, a proxy, KILL...)."""
        if not self._held:
            return
        if self.backend == "postgresql":
            unsigned = int(self.key) & 0xFFFFFFFFFFFFFFFF
            mine = self._scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND classid::bigint = :high "
                "AND objid::bigint = :low AND objsubid = 1",
                high=unsigned >> 32, low=unsigned & 0xFFFFFFFF)
        else:
            mine = self._scalar("SELECT IS_USED_LOCK(:key) = CONNECTION_ID()", key=self.key)
        if not mine:
            self._held = False
            self._close()
            raise LockLost(self._lost("the server no longer lists it as ours"),
                           hint=LOST_HINT)

    def release(self) -> None:
        with self._guard:
            if self._connection is not None and self._held:
                unlock = ("SELECT pg_advisory_unlock(:key)" if self.backend == "postgresql"
                          else "SELECT RELEASE_LOCK(:key)")
                with contextlib.suppress(Exception):  # the connection may be gone: the lock too
                    self._connection.scalar(unlock, {"key": self.key})
            self._held = False
            self._close()

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        self._held = False
        if connection is not None:
            connection.close()

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

    def migration_lock(self, context: Any) -> MigrationLock:
        """The second lock, taken on env.py's migration connection (see the module doc)."""
        return MigrationLock(context, self.backend, self.key_text + _MIGRATING)


class MigrationLock:
    """A lock held by the connection the migrations run on: it cannot outlive their work.

    PostgreSQL, migrations in one transaction (Alembic's default there) or inside a
    transaction env.py began: ``pg_try_advisory_xact_lock``, ended by the commit or the
    rollback. Otherwise (``transaction_per_migration``, MariaDB's non-transactional DDL): a
    session lock, released after the last migration's commit.
    """

    def __init__(self, context: Any, backend: str, key_text: str) -> None:
        self.connection = context.connection
        self.backend = backend
        self.per_transaction = backend == "postgresql" and (
            bool(getattr(context, "_in_external_transaction", False))
            or (context.impl.transactional_ddl
                and not getattr(context, "_transaction_per_migration", False)))
        self.key: int | str = (advisory_key(key_text) if backend == "postgresql"
                               else mysql_lock_name(key_text))
        self._held = False

    def _scalar(self, sql: str) -> Any:
        from sqlalchemy import text

        return self.connection.execute(text(sql), {"key": self.key}).scalar()

    def try_acquire(self) -> bool:
        if self.backend == "postgresql":
            function = ("pg_try_advisory_xact_lock" if self.per_transaction
                        else "pg_try_advisory_lock")
            self._held = bool(self._scalar(f"SELECT {function}(:key)"))
        else:
            self._held = self._scalar("SELECT GET_LOCK(:key, 0)") == 1
        return self._held

    def release(self) -> None:
        if not self._held or self.per_transaction:
            return  # a transaction-level lock ends with the transaction
        self._held = False
        unlock = ("SELECT pg_advisory_unlock(:key)" if self.backend == "postgresql"
                  else "SELECT RELEASE_LOCK(:key)")
        with contextlib.suppress(Exception):  # a dead connection took the lock with it
            self._scalar(unlock)

    def holder(self) -> str | None:
        return None


def _dedicated_connection(endpoint: Endpoint) -> _Connection:
    """A connection of our own, outside env.py's transaction, in autocommit mode, through
    the project's own driver (sync or asyncio)."""
    import sqlalchemy as sa

    engine = endpoint.engine
    try:
        if engine is not None and getattr(engine.dialect, "is_async", False):
            return _AsyncConnection(endpoint)
        if engine is None:
            engine = sa.create_engine(endpoint.url, poolclass=sa.pool.NullPool)
            if getattr(engine.dialect, "is_async", False):
                engine.dispose()
                return _AsyncConnection(endpoint)
            return _SyncConnection(engine, owned=True)
        return _SyncConnection(engine, owned=False)
    except (sa.exc.SQLAlchemyError, OSError, ConnectionError, TimeoutError) as error:
        raise DatabaseError(f"cannot open the lock connection to {_masked(endpoint.url)}: "
                            f"{_first_line(error)}",
                            hint="check that the database server runs") from error


def sqlite_lock_file(endpoint: Endpoint) -> Path | None:
    """The lock file beside a SQLite database file; None for an in-memory database.

    Keyed by the file's identity: the path is fully resolved (symlinks of the file and of
    its folders, ``..``, relative spellings), so every way of reaching one database file
    shares one lock file.
    """
    database = endpoint.url.database or ""
    query = dict(endpoint.url.query)
    if str(query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):
        database = database[len("file:"):].split("?", 1)[0]
        if str(query.get("mode", "")) == "memory":
            return None
    if database in ("", ":memory:"):
        return None
    return Path(os.path.realpath(database) + LOCK_FILE_SUFFIX)


def _identity(endpoint: Endpoint) -> str:
    """What makes two endpoints the same lock (an env.py may reach one database twice)."""
    url = endpoint.url
    if url.get_backend_name() == "sqlite":
        return f"sqlite:{sqlite_lock_file(endpoint)}"
    return "\0".join(str(part) for part in (
        url.get_backend_name(), url.host, url.port, url.database, url.username,
        endpoint.version_table_schema, endpoint.version_table))


class HeldLocks:
    """The database locks one run holds, and how its migrations stay guarded by them."""

    def __init__(self, waiting: Waiting) -> None:
        self.waiting = waiting
        self.locks: dict[str, _Lock] = {}  # by _identity
        self.notes: list[str] = []  # e.g. a dialect without a lock

    def verify(self) -> None:
        """Raise LockLost when a lock this run took is no longer its own."""
        for lock in self.locks.values():
            check = getattr(lock, "verify", None)
            if check is not None:
                check()

    @contextlib.contextmanager
    def migrating(self, context: Any) -> Iterator[None]:
        """Around Alembic's ``run_migrations`` on env.py's connection ``context``: check
        the locks, then take the migration lock on that connection BEFORE Alembic reads
        the heads (the dedicated connection's lock is checked at every poll, which also
        keeps it from sitting idle)."""
        from alembic_autocopy.effects.database import Endpoint

        self.verify()
        connection = getattr(context, "connection", None)
        if connection is None or getattr(context, "as_sql", False):
            yield
            return
        endpoint = Endpoint(connection.engine.url, context.version_table,
                            context.version_table_schema)
        lock = self.locks.get(_identity(endpoint))
        if not isinstance(lock, ServerLock):
            yield
            return
        migration = lock.migration_lock(context)
        acquire(migration, self.waiting, WAITING_FOR_DATABASE,
                _timed_out(lock.where, self.waiting.timeout), tick=self.verify)
        try:
            yield
        finally:
            migration.release()

    def guard_steps(self, steps: Iterable[T]) -> Iterator[T]:
        """Alembic's migration steps, the locks checked before each one and once more after
        the last (before the final commit)."""
        for step in steps:
            self.verify()
            yield step
        self.verify()


def _timed_out(where: str, timeout: float) -> Callable[[float, str | None], AutocopyError]:
    def timed_out(waited: float, holder: str | None) -> AutocopyError:
        return LockTimeout(
            f"gave up after {waited:.0f} s (lock_timeout = {timeout:g} s): another upgrade "
            f"of {where} still holds its lock" + (f" ({holder})" if holder else ""),
            hint="let it finish (or stop it), then run again; --lock-timeout SECONDS "
                 "(or lock_timeout in [tool.alembic-autocopy]) waits longer")

    return timed_out


@contextlib.contextmanager
def database_lock(endpoints: Sequence[Endpoint], waiting: Waiting) -> Iterator[HeldLocks]:
    """Hold the upgrade lock of every database env.py reaches (in a fixed order, so two
    processes never wait for each other). Yields the held locks (``notes``: e.g. a dialect
    without a lock; ``migrating``/``guard_steps``: for the upgrade)."""
    unique = {_identity(endpoint): endpoint for endpoint in endpoints}
    held = HeldLocks(waiting)
    with contextlib.ExitStack() as stack:
        for identity in sorted(unique):
            endpoint = unique[identity]
            where = _masked(endpoint.url)
            lock = _lock_for(endpoint)
            if lock is None:
                if endpoint.url.get_backend_name() != "sqlite":
                    held.notes.append(f"no upgrade lock for {endpoint.url.get_backend_name()} "
                                      f"({where}): parallel upgrades of it are not serialized")
                continue
            if isinstance(lock, ServerLock):
                stack.callback(lock.release)  # the connection is open even if never locked
            stack.enter_context(holding(lock, waiting, WAITING_FOR_DATABASE,
                                        _timed_out(where, waiting.timeout)))
            held.locks[identity] = lock
        yield held


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
