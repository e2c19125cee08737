"""The database side: reach it through the project's own env.py, exactly as ``alembic`` does.

Reading the applied revisions runs env.py with a ``fn`` that receives the raw ids from the
version table and returns no step: it works where ``alembic current`` fails (unknown ids),
with sync and async env.py, custom version tables, and env.py files that configure one
context per engine. Upgrading runs env.py once more with Alembic's own upgrade steps.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from alembic_autocopy.core.errors import (
    TRACEBACK_HINT,
    AutocopyError,
    ConfigError,
    DatabaseError,
)
from alembic_autocopy.core.model import INTERNAL_OPTION  # our own runs of env.py are not healed
from alembic_autocopy.core.redaction import (
    mask_passwords,
    mask_url,
    password_holds_unencoded_at,
    remember_url,
)
from alembic_autocopy.effects.project import ProjectConfig

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from alembic_autocopy.effects.locking import HeldLocks

# Imported inside functions, as each saves >= 5 ms where skipped: Alembic and SQLAlchemy (~300 ms)
# only when the database is read.

T = TypeVar("T")

class DatabaseState(NamedTuple):
    """What the version table(s) hold, read through env.py."""

    heads: tuple[str, ...]
    version_table: str = "alembic_version"
    version_table_schema: str | None = None
    url: str | None = None  # password masked
    dialect: str | None = None
    engines: int = 1  # how many times env.py configured a context (multi-database env.py)
    # Every database env.py connected to, for the upgrade lock (see locking.py).
    endpoints: tuple[Endpoint, ...] = ()
    # The version folders Alembic uses once env.py ran (env.py may replace them, e.g. one
    # folder per dialect: ``context.script.version_locations = [...]``), and whether it
    # reads their sub-folders. None: not known.
    version_locations: tuple[str, ...] | None = None
    recursive_version_locations: bool | None = None


class Endpoint(NamedTuple):
    """One database env.py reached: enough to open a connection of our own to it."""

    url: Any  # sqlalchemy URL, password included: for connecting only (its repr masks it)
    version_table: str = "alembic_version"
    version_table_schema: str | None = None
    engine: Any = None  # env.py's own engine


class UpgradeResult:
    def __init__(self, before: tuple[str, ...], after: tuple[str, ...],
                 target: str = "heads") -> None:
        self.before = before
        self.after = after
        self.applied: list[str] = []  # in the order Alembic ran them
        self.target = target


def alembic_config(project: ProjectConfig, stdout: Any = None) -> Config:
    """Alembic's own ``Config`` for the same files, section and ``-x`` arguments."""
    from alembic.config import Config

    options = argparse.Namespace(x=list(project.x_args), autogenerate=False, sql=False,
                                 quiet=False, verbose=False, raiseerr=False, config=None,
                                 name=project.section)
    kwargs: dict[str, Any] = {"ini_section": project.section, "cmd_opts": options}
    if stdout is not None:
        kwargs["stdout"] = stdout
    if "toml_file" in inspect.signature(Config.__init__).parameters:
        kwargs["toml_file"] = str(project.toml_path) if project.toml_path else None
    config = Config(str(project.ini_path) if project.ini_path else None, **kwargs)
    # Its password is masked in everything printed or logged from now on, even where a
    # driver's message quotes it.
    remember_url(_main_url(config))
    return config


def _main_url(config: Config) -> str | None:
    try:
        url = config.get_main_option("sqlalchemy.url")
    except Exception:  # an unreadable config is reported elsewhere
        return None
    return url if isinstance(url, str) else None


def script_directory(config: Config) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    before = list(sys.path)
    script = ScriptDirectory.from_config(config)
    # from_config prepends prepend_sys_path on every call; keep sys.path from growing.
    added = sys.path[: len(sys.path) - len(before)]
    sys.path[:] = added + [p for p in before if p not in added]
    return script


class _AboveInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO


@contextlib.contextmanager
def quiet_alembic_logs() -> Iterator[None]:
    """Hide Alembic's INFO lines ("Context impl ...") while only reading the heads: they say
    nothing about what this tool does. Only Alembic's migration logger is filtered (a filter
    survives env.py's fileConfig()); an application's own logging is left alone."""
    logger = logging.getLogger("alembic.runtime.migration")
    quiet = _AboveInfo()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def outside_event_loop(function: Callable[[], T]) -> T:
    """Call ``function`` in a worker thread when this thread runs an event loop: env.py's
    ``asyncio.run()`` fails inside a running loop (an async application's start-up)."""
    if not _runs_an_event_loop():
        return function()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()


def _runs_an_event_loop() -> bool:
    """Does this thread run an event loop? Asked apart from the call it decides: a failure
    raised inside the ``except`` would carry asyncio's "no running event loop" as its
    context, at the top of every ``--traceback``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


ExtraCollector = Callable[[Sequence[str], "MigrationContext"], None]


def read_state(project: ProjectConfig,
               collect_extra: ExtraCollector | None = None) -> DatabaseState:
    """The applied revision ids, unresolved (they may be unknown to this worktree).

    ``collect_extra(heads, context)`` runs on the connection env.py opened, once per engine
    (e.g. to read the record table): no second engine, and it works with async env.py too.
    """
    config = alembic_config(project)
    heads: list[str] = []
    details: dict[str, Any] = {"engines": 0}

    def collect(rev: Sequence[str], context: MigrationContext) -> list[Any]:
        for head in rev:
            if head not in heads:
                heads.append(head)
        _remember_context(details, context)
        if collect_extra is not None:
            collect_extra(tuple(rev), context)
        return []

    def run() -> None:
        from alembic.runtime.environment import EnvironmentContext

        script = script_directory(config)
        with EnvironmentContext(config, script, fn=collect, dont_mutate=True,
                                **{INTERNAL_OPTION: True}):
            try:
                script.run_env()
            finally:
                forget_loop_bound_connections(
                    endpoint.engine for endpoint in details.get("endpoints", ()))
        details["version_locations"] = tuple(
            os.fspath(path) for path in script._version_locations)
        details["recursive"] = bool(script.recursive_version_locations)

    with quiet_alembic_logs():
        guarded(run, project)
    return DatabaseState(
        heads=tuple(heads),
        version_table=details.get("version_table", "alembic_version"),
        version_table_schema=details.get("version_table_schema"),
        url=details.get("url"),
        dialect=details.get("dialect"),
        engines=max(1, details["engines"]),
        endpoints=tuple(details.get("endpoints", ())),
        version_locations=details.get("version_locations"),
        recursive_version_locations=details.get("recursive"),
    )


def forget_loop_bound_connections(engines: Iterable[Any]) -> None:
    """Give each async engine env.py used that keeps a pool (an application's engine that
    env.py imports, instead of the template's NullPool one) a new, empty pool.

    Its pooled connections belong to env.py's event loop, which ``asyncio.run()`` closed as
    env.py ended: the next run of env.py in this process (a repair runs it up to three
    times), or the application after ``ensure_database_current``, would be handed one and
    fail with "attached to a different loop". They are left unclosed (``close=False``,
    SQLAlchemy's advice after a fork: closing one needs its loop, gone now)."""
    from sqlalchemy.pool import NullPool

    for engine in {id(engine): engine for engine in engines if engine is not None}.values():
        if engine.dialect.is_async and not isinstance(engine.pool, NullPool):
            engine.dispose(close=False)


def _remember_context(details: dict[str, Any], context: MigrationContext) -> None:
    details["engines"] += 1
    details["version_table"] = context.version_table
    details["version_table_schema"] = context.version_table_schema
    details["dialect"] = context.dialect.name if context.dialect is not None else None
    connection = context.connection
    if connection is not None:
        details["url"] = mask_url(connection.engine.url)
        details.setdefault("endpoints", []).append(Endpoint(
            connection.engine.url, context.version_table, context.version_table_schema,
            connection.engine))


class MigrationProgress:
    """Where an upgrade stands, to say what failed and what the database holds after it."""

    def __init__(self) -> None:
        self.steps: list[Any] = []  # Alembic's steps, in order (once handed)
        self.done: set[str] = set()  # revisions whose step completed
        self.heads: tuple[str, ...] = ()  # the version table after the last completed step
        self.dialect: str | None = None
        self.transactional_ddl = True
        self.engine: Any = None  # to look at the database after a failure (sync engines)
        self.tables: set[str] | None = None  # table names before the step now running

    def running(self) -> Any:
        """The step that was running when the upgrade failed, or None."""
        for step in self.steps:
            if step_revision(step) not in self.done:
                return step
        return None


def step_revision(step: Any) -> str:
    """The revision id an Alembic ``RevisionStep`` applies."""
    return str(getattr(getattr(step, "revision", None), "revision", "?"))


def upgrade(project: ProjectConfig, target: str,
            on_version_apply: Sequence[Callable[..., None]] = (),
            locks: HeldLocks | None = None) -> UpgradeResult:
    """Run ONE Alembic upgrade to ``target`` ("heads", "head", a revision) in this process.

    ``locks``: the database locks this run holds. env.py's migration connection then takes
    the migration lock before Alembic reads the heads, and the locks are checked before each
    migration and before the final commit (``locking.HeldLocks``): a lost lock stops the run.
    """
    config = alembic_config(project)
    result = UpgradeResult(before=(), after=(), target=target)
    current: dict[str, tuple[str, ...]] = {}
    progress = MigrationProgress()

    def track(*, ctx: Any, step: Any, heads: set[str], run_args: Any) -> None:
        if step.is_upgrade:
            result.applied.extend(step.up_revision_ids)
            progress.done.update(step.up_revision_ids)
        current["heads"] = progress.heads = tuple(sorted(heads))
        if not progress.transactional_ddl:
            progress.tables = _table_names(ctx.connection)

    def steps(rev: Sequence[str], context: MigrationContext) -> Any:
        if context.connection is not None:
            engines.append(context.connection.engine)
        result.before = tuple(rev)
        current.setdefault("heads", tuple(rev))
        progress.heads = tuple(rev)
        context.on_version_apply_callbacks = (
            *context.on_version_apply_callbacks, track, *on_version_apply)
        planned = script._upgrade_revs(target, rev)  # type: ignore[arg-type]
        if planned:
            gc.enable()  # migrations are the project's code: the one-shot CLI turned it off
        _remember_progress(progress, context, planned)
        return planned if locks is None else locks.guard_steps(planned)

    script: ScriptDirectory
    engines: list[Any] = []

    def run() -> None:
        nonlocal script
        from alembic.runtime.environment import EnvironmentContext

        script = script_directory(config)
        environment = EnvironmentContext(config, script, fn=steps, destination_rev=target,
                                         **{INTERNAL_OPTION: True})
        if locks is not None:
            # env.py's `context.run_migrations()` calls the instance's attribute (Alembic's
            # module proxy reads it with getattr): wrap it to lock env.py's own connection
            # before the heads are read. A subclass would not do: the proxy is per class.
            original = environment.run_migrations

            def run_migrations(**kw: Any) -> None:
                with locks.migrating(environment.get_context()):
                    original(**kw)

            environment.run_migrations = run_migrations  # type: ignore[method-assign]
        with environment:
            try:
                script.run_env()
            finally:
                forget_loop_bound_connections(engines)

    guarded(run, project, during_upgrade=True, progress=progress)
    result.after = current.get("heads", result.before)
    return result


def _remember_progress(progress: MigrationProgress, context: MigrationContext,
                       planned: Sequence[Any]) -> None:
    progress.steps = list(planned)
    progress.done = set()
    dialect = context.dialect
    progress.dialect = _dialect_label(dialect)
    progress.transactional_ddl = bool(getattr(context.impl, "transactional_ddl", True))
    connection = context.connection
    progress.engine = connection.engine if connection is not None else None
    if not progress.transactional_ddl and planned:
        # Without transactional DDL a failed migration leaves what it did: list the
        # tables before each step, to name what the failing one left.
        progress.tables = _table_names(connection)


def _dialect_label(dialect: Any) -> str | None:
    if dialect is None:
        return None
    if getattr(dialect, "is_mariadb", False):
        return "MariaDB"
    name = str(dialect.name)
    return {"postgresql": "PostgreSQL", "mysql": "MySQL", "sqlite": "SQLite",
            "mssql": "SQL Server", "oracle": "Oracle"}.get(name, name)


def _table_names(connection: Any) -> set[str] | None:
    """The tables of the connection's database (default schema), or None if unknown."""
    if connection is None:
        return None
    try:
        from sqlalchemy import inspect as sa_inspect

        return set(sa_inspect(connection).get_table_names())
    except Exception:  # an async engine outside its loop, a connection gone: unknown
        return None


# libpq's connect timeout when neither the URL nor the environment sets one: an unreachable
# host then fails in seconds instead of the TCP default (minutes). PyMySQL's is already 10 s.
DEFAULT_CONNECT_TIMEOUT = "10"


def guarded(run: Callable[[], None], project: ProjectConfig,
            during_upgrade: bool = False, progress: MigrationProgress | None = None) -> None:
    """Run env.py; turn the expected failures into one clear error (never a traceback)."""
    os.environ.setdefault("PGCONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)
    try:
        outside_event_loop(run)
    except AutocopyError:
        raise
    except Exception as error:
        raise translate_error(error, project, during_upgrade, progress) from error


def translate_error(error: BaseException, project: ProjectConfig,
                    during_upgrade: bool = False,
                    progress: MigrationProgress | None = None) -> AutocopyError:
    """One user-facing error for what env.py, SQLAlchemy or Alembic raised: what really
    happened (refused, login refused, no such database, locked, a migration that failed),
    with the URL env.py really used, its secrets masked."""
    from sqlalchemy import exc as sa_exc

    used = used_url(error)  # first: it remembers the URL's secrets, masked in what follows
    text = mask_passwords(_first_line(error))
    where = project.ini_path or project.toml_path or project.cwd
    if isinstance(error, (sa_exc.ArgumentError, sa_exc.NoSuchModuleError)):
        return ConfigError(f"invalid database URL in {where}: {text}",
                           hint=f"fix {_url_setting(project)}")
    if during_upgrade and _connection_invalidated(error):
        return _connection_lost_during_upgrade(error)
    running = progress.running() if progress is not None else None
    if running is not None and _failed_in_migration(error, text):
        assert progress is not None
        return failed_migration(error, running, progress, project)
    return _error_by_kind(error, text, used, project)


def _connection_invalidated(error: BaseException) -> bool:
    from sqlalchemy import exc as sa_exc

    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


def _connection_lost_during_upgrade(error: BaseException) -> DatabaseError:
    original = getattr(error, "orig", None) or error
    return DatabaseError(
        "the connection to the database was lost during the upgrade: "
        f"{mask_passwords(_first_line(original))}",
        hint="what the database committed stays, the rest was rolled back; run "
             "`alembic-autocopy upgrade` again to finish")


def _failed_in_migration(error: BaseException, text: str) -> bool:
    """Whether an error raised while a migration ran is that migration's failure (not a
    locked database or a connection that failed)."""
    locked = any(word in text.lower() for word in _LOCKED)
    return not locked and not isinstance(error, (ConnectionError, TimeoutError))


def _error_by_kind(error: BaseException, text: str, used: str | None,
                   project: ProjectConfig) -> AutocopyError:
    """The error for what failed outside a migration, by the kind of exception."""
    from alembic.util import CommandError
    from sqlalchemy import exc as sa_exc

    where = project.ini_path or project.toml_path or project.cwd
    if isinstance(error, FileNotFoundError):
        return ConfigError(f"{text}", hint=f"check script_location in {where}")
    if isinstance(error, (sa_exc.DBAPIError, ConnectionError, TimeoutError)) or (
            type(error) is OSError):  # asyncpg: "Multiple exceptions: ... Connect call failed"
        original = getattr(error, "orig", None) or error
        detail = mask_passwords(_first_line(original))
        raw_url = _used_engine_url(error) or _main_url(alembic_config(project))
        return connection_error(detail, _database_named(used, project), _url_setting(project),
                                unencoded_at=password_holds_unencoded_at(raw_url))
    if isinstance(error, ModuleNotFoundError):
        return missing_module_error(error, project)
    if isinstance(error, CommandError):
        return AutocopyError(f"alembic: {text}")
    malformed = _malformed_graph(error)
    if malformed is not None:
        return AutocopyError(f"Alembic cannot load the revisions here: {malformed}",
                             hint="`alembic-autocopy list --no-db` names the files to fix "
                                  "(down_revision)")
    kind = type(error).__name__
    if "attached to a different loop" in text:  # asyncio's words for a foreign connection
        return AutocopyError(
            f"env.py failed: its engine handed out a connection made on another event loop "
            f"({kind}: {text})",
            hint="env.py uses an engine that pools connections (the application's own?) and "
                 "the application already connected with it: call ensure_database_current "
                 "before the application's first query, or let env.py make its own engine "
                 "with poolclass=NullPool, as Alembic's async template does")
    return AutocopyError(f"env.py failed: {kind}: {text}", hint=TRACEBACK_HINT)


# What drivers say (lower-case), by what happened. PostgreSQL (psycopg, asyncpg), MariaDB and
# MySQL (PyMySQL, mysqlclient, aiomysql, asyncmy: error numbers), SQLite.
_REFUSED = ("connection refused", "connect call failed", "(2003,", "can't connect to mysql",
            "can't connect to server", "errno 111")
_UNREACHABLE = ("timeout expired", "timed out", "no route to host", "network is unreachable",
                "could not translate host name", "name or service not known",
                "nodename nor servname", "temporary failure in name resolution",
                "unknown mysql server host", "(2005,")
_LOGIN = ("password authentication failed", "access denied for user", "(1045,",
          "authentication failed", "no password supplied", "fe_sendauth", "(1698,",
          "pg_hba.conf", "invalidpassword", "invalid password")
_NO_DATABASE = ("unknown database", "(1049,")
_LOCKED = ("database is locked", "database table is locked")


def _url_setting(project: ProjectConfig) -> str:
    """Where the URL to fix comes from: the config's ``sqlalchemy.url`` (env.py may build
    another), or, when the config sets none (FastAPI-style settings), env.py alone. Read only
    once something failed."""
    where = project.ini_path or project.toml_path or project.cwd
    if _main_url(alembic_config(project)):
        return f"sqlalchemy.url in {where} (or the URL env.py builds)"
    return f"the URL env.py builds ({where.name} sets no sqlalchemy.url)"


def connection_error(detail: str, url: str, settings: str,
                     unencoded_at: bool = False) -> DatabaseError:
    """The error for a database that could not be used, by what the driver said;
    ``settings`` names where its URL comes from (``_url_setting``). ``unencoded_at``: the
    URL's password holds a raw ``@``, the likely cause whatever the driver said (SQLAlchemy
    took what follows it for the host)."""
    error = _connection_error_by_kind(detail, url, settings)
    if unencoded_at:
        error.hint = (f"the password of {settings} holds an unencoded `@`, so what follows it "
                      "was taken for the host: write each `@` of the password as `%40` "
                      "(`%%40` in alembic.ini)")
    return error


def _connection_error_by_kind(detail: str, url: str, settings: str) -> DatabaseError:
    lowered = detail.lower()
    if any(word in lowered for word in _LOCKED):
        return DatabaseError(
            f"the database {url} is locked: another connection holds a write transaction "
            f"on it ({detail})",
            hint="finish or close what holds it (a running app, a shell, a DB browser, "
                 "another upgrade), then run again")
    if any(word in lowered for word in _LOGIN) or (
            "role" in lowered and "does not exist" in lowered):
        return DatabaseError(
            f"the database server refused the login to {url} (authentication failed): "
            f"{detail}",
            hint=f"check the user name and password of {settings}, or the variables "
                 "env.py reads them from")
    if any(word in lowered for word in _NO_DATABASE) or (
            "database" in lowered and "does not exist" in lowered):
        return DatabaseError(
            f"the database named in {url} does not exist on its server: {detail}",
            hint=f"create it, or fix the database name in {settings}")
    if any(word in lowered for word in _REFUSED):
        return DatabaseError(
            f"cannot connect to {url}: the server refused the connection ({detail})",
            hint=f"start the database server, or fix the host and port in {settings}")
    if any(word in lowered for word in _UNREACHABLE):
        return DatabaseError(
            f"cannot reach the database server of {url}: {detail}",
            hint=f"check the network and the host name in {settings}")
    return DatabaseError(
        f"cannot use the database {url}: {detail}",
        hint=f"check that the database server runs and that {settings} is right")


def failed_migration(error: BaseException, step: Any, progress: MigrationProgress,
                     project: ProjectConfig) -> AutocopyError:
    """A migration's upgrade() failed: name it, its file, and what the database holds now."""
    original = getattr(error, "orig", None) or error
    detail = mask_passwords(_first_line(original))
    if getattr(error, "orig", None) is None:
        detail = f"{type(error).__name__}: {detail}"
    revision = step_revision(step)
    path = getattr(getattr(step, "revision", None), "path", None)
    shown = _relative(path, project) if path else "file unknown"
    heads = ", ".join(progress.heads) or "nothing applied"
    dialect = progress.dialect or "the database"
    message = f"migration {revision} ({shown}) failed: {detail}"
    again = "fix the migration, then run `alembic-autocopy upgrade` again"
    if progress.transactional_ddl:
        return DatabaseError(
            f"{message}; {dialect} rolled it back (transactional DDL): the database is still "
            f"at {heads}", hint=again)
    before = progress.tables
    after = _table_names_after(progress.engine)
    if before is None or after is None:
        left = "what it did before failing stays (the tables could not be listed)"
    else:
        created, dropped = sorted(after - before), sorted(before - after)
        parts = ([f"table(s) {', '.join(created)} created"] if created else []) + (
            [f"table(s) {', '.join(dropped)} dropped"] if dropped else [])
        left = ("it left " + " and ".join(parts)) if parts else "no table it created is left"
    exists = "already exists" in detail.lower() or "(1050," in detail
    if exists:
        hint = ("an earlier run of this migration that failed or was interrupted left that "
                "object behind: drop it (and undo the rest of that run by hand), then run "
                "`alembic-autocopy upgrade` again")
    else:
        hint = ("undo by hand what it left (Alembic would run the whole migration again "
                f"over it), {again}")
    return DatabaseError(
        f"{message}; {dialect} has no transactional DDL: the version table still says "
        f"{heads}, and {left}", hint=hint)


def missing_module_error(error: ModuleNotFoundError, project: ProjectConfig) -> AutocopyError:
    """A local package (``app`` beside alembic.ini) that is not on ``sys.path`` from here,
    told apart from a distribution that is not installed."""
    name = error.name or "?"
    top = name.split(".")[0]
    candidates = [project.here, *project.here.parents[:3], project.cwd]
    for folder in dict.fromkeys(candidates):
        package = folder / top
        if (package / "__init__.py").is_file() or package.with_suffix(".py").is_file() or (
                package.is_dir() and any(package.glob("*.py"))):
            return _local_package_error(name, package, folder, project)
    return DatabaseError(
        f"env.py needs a module that is not installed: {name} (not found on sys.path, "
        f"nor as a local package beside {project.here})",
        hint=f"install the distribution that provides it in this environment "
             f"(pip install {top}, if that is its name on PyPI)")


def _local_package_error(name: str, package: Path, folder: Path,
                         project: ProjectConfig) -> DatabaseError:
    """``folder`` holds the package but is not on sys.path. Like the ``alembic`` console
    script, the tool puts nothing there but ``prepend_sys_path`` (relative to the current
    folder): say what that setting gave, or that it is not set, and a fix that works from
    where the user stands."""
    config_file = project.ini_path or project.toml_path
    looked = [os.path.abspath(entry) for entry in _prepend_sys_path(project)]
    if looked:
        why = (f"prepend_sys_path, relative to the current folder as for alembic, gave: "
               f"{', '.join(looked)}")
    else:
        why = (f"prepend_sys_path is not set in {config_file}, and the alembic command puts "
               "no other folder on sys.path")
    install = "install the project in this environment (`pip install -e .`, `uv sync`)"
    here_already = os.path.realpath(project.cwd) == os.path.realpath(folder)
    if looked and not here_already:
        hint = (f"run the command from {folder} (cd there first), or set prepend_sys_path "
                f"in {config_file} to a folder that holds it")
    else:
        setting = (f"`prepend_sys_path = .` to the [{project.section}] section of {config_file}"
                   if project.ini_path is not None else
                   f'`prepend_sys_path = ["."]` to [tool.alembic] in {config_file}')
        where = "" if here_already else f" and run the command from {folder}"
        template = " (Alembic's template has it)" if here_already else ""
        hint = f"add {setting}{template}{where}, or {install}"
    return DatabaseError(
        f"env.py imports {name}, a local package in {package}, but {folder} is not on "
        f"sys.path here ({why})", hint=hint)


def _prepend_sys_path(project: ProjectConfig) -> list[str]:
    try:
        return alembic_config(project).get_prepend_sys_paths_list() or []
    except Exception:  # an unreadable config is reported elsewhere
        return []


def _table_names_after(engine: Any) -> set[str] | None:
    if engine is None:
        return None
    try:
        with engine.connect() as connection:
            return _table_names(connection)
    except Exception:  # an async engine, a server gone: unknown
        return None


def _relative(path: str, project: ProjectConfig) -> str:
    try:
        return os.path.relpath(path, project.cwd)
    except ValueError:  # another drive (Windows)
        return path


def used_url(error: BaseException) -> str | None:
    """The URL of the engine env.py really used, masked, found in the failure's traceback
    (the engine is a local of SQLAlchemy's connect frames, sync and async alike); None when
    env.py failed before it made one. Its secrets are remembered for masking."""
    url = _used_engine_url(error)
    return None if url is None else mask_url(url)


def _used_engine_url(error: BaseException) -> Any:
    """The SQLAlchemy URL of the engine env.py really used (see ``used_url``), unmasked."""
    from sqlalchemy.engine import Engine

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = None
        frame = current.__traceback__
        while frame is not None:  # outermost first: the last engine is the one connecting
            for value in list(frame.tb_frame.f_locals.values()):
                if isinstance(value, Engine):
                    found = value
            frame = frame.tb_next
        if found is not None:
            return found.url
        current = current.__cause__ or current.__context__
    return None


def _database_named(used: str | None, project: ProjectConfig) -> str:
    if used is not None:
        return used
    url = _main_url(alembic_config(project))
    if url:
        where = project.ini_path or project.toml_path or project.cwd
        return f"{mask_url(url)} (sqlalchemy.url in {where}; env.py may use another)"
    return "the database env.py uses"


def _malformed_graph(error: BaseException) -> str | None:
    """What is wrong when Alembic's revision map refused the files (a cycle, a parent that
    no file has: a bare ``KeyError`` from ``RevisionMap``), else None."""
    from alembic.script.revision import RevisionError

    if isinstance(error, RevisionError):
        return mask_passwords(_first_line(error))
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if (isinstance(error, KeyError) and error.args and frame is not None
            and frame.tb_frame.f_code.co_filename.replace(os.sep, "/").endswith(
                "alembic/script/revision.py")):
        return (f"revision {error.args[0]} is named as a parent (down_revision or "
                "depends_on) but no file has it")
    return None


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(error).__name__
