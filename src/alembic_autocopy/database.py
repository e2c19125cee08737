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
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from alembic_autocopy.errors import AutocopyError, ConfigError, DatabaseError
from alembic_autocopy.project import ProjectConfig
from alembic_autocopy.redaction import mask_passwords

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

T = TypeVar("T")

@dataclass(frozen=True)
class DatabaseState:
    """What the version table(s) hold, read through env.py."""

    heads: tuple[str, ...]
    version_table: str = "alembic_version"
    version_table_schema: str | None = None
    url: str | None = None  # password masked
    dialect: str | None = None
    engines: int = 1  # how many times env.py configured a context (multi-database env.py)
    # Every database env.py connected to, for the upgrade lock (see locking.py).
    endpoints: tuple[Endpoint, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class Endpoint:
    """One database env.py reached: enough to open a connection of our own to it."""

    url: Any  # sqlalchemy URL, password included: for connecting only (its repr masks it)
    version_table: str = "alembic_version"
    version_table_schema: str | None = None
    engine: Any = field(default=None, repr=False, compare=False)  # env.py's own engine


@dataclass
class UpgradeResult:
    before: tuple[str, ...]
    after: tuple[str, ...]
    applied: list[str] = field(default_factory=list)  # in the order Alembic ran them
    target: str = "heads"


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
    return Config(str(project.ini_path) if project.ini_path else None, **kwargs)


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
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()


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
        with EnvironmentContext(config, script, fn=collect, dont_mutate=True):
            script.run_env()

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
    )


def _remember_context(details: dict[str, Any], context: MigrationContext) -> None:
    details["engines"] += 1
    details["version_table"] = context.version_table
    details["version_table_schema"] = context.version_table_schema
    details["dialect"] = context.dialect.name if context.dialect is not None else None
    connection = context.connection
    if connection is not None:
        details["url"] = connection.engine.url.render_as_string(hide_password=True)
        details.setdefault("endpoints", []).append(Endpoint(
            connection.engine.url, context.version_table, context.version_table_schema,
            connection.engine))


def upgrade(project: ProjectConfig, target: str,
            on_version_apply: Sequence[Callable[..., None]] = ()) -> UpgradeResult:
    """Run ONE Alembic upgrade to ``target`` ("heads", "head", a revision) in this process."""
    config = alembic_config(project)
    result = UpgradeResult(before=(), after=(), target=target)
    current: dict[str, tuple[str, ...]] = {}

    def track(*, ctx: Any, step: Any, heads: set[str], run_args: Any) -> None:
        if step.is_upgrade:
            result.applied.extend(step.up_revision_ids)
        current["heads"] = tuple(sorted(heads))

    def steps(rev: Sequence[str], context: MigrationContext) -> Any:
        result.before = tuple(rev)
        current.setdefault("heads", tuple(rev))
        context.on_version_apply_callbacks = (
            *context.on_version_apply_callbacks, track, *on_version_apply)
        return script._upgrade_revs(target, rev)  # type: ignore[arg-type]

    script: ScriptDirectory

    def run() -> None:
        nonlocal script
        from alembic.runtime.environment import EnvironmentContext

        script = script_directory(config)
        with EnvironmentContext(config, script, fn=steps, destination_rev=target):
            script.run_env()

    guarded(run, project, during_upgrade=True)
    result.after = current.get("heads", result.before)
    return result


# libpq's connect timeout when neither the URL nor the environment sets one: an unreachable
# host then fails in seconds instead of the TCP default (minutes). PyMySQL's is already 10 s.
DEFAULT_CONNECT_TIMEOUT = "10"


def guarded(run: Callable[[], None], project: ProjectConfig,
            during_upgrade: bool = False) -> None:
    """Run env.py; turn the expected failures into one clear error (never a traceback)."""
    os.environ.setdefault("PGCONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)
    try:
        outside_event_loop(run)
    except AutocopyError:
        raise
    except Exception as error:
        raise translate_error(error, project, during_upgrade) from error


def translate_error(error: BaseException, project: ProjectConfig,
                    during_upgrade: bool = False) -> AutocopyError:
    """One user-facing error for what env.py, SQLAlchemy or Alembic raised."""
    from alembic.util import CommandError
    from sqlalchemy import exc as sa_exc

    text = mask_passwords(_first_line(error))
    where = project.ini_path or project.toml_path or project.cwd
    if isinstance(error, (sa_exc.ArgumentError, sa_exc.NoSuchModuleError)):
        return ConfigError(f"invalid database URL in {where}: {text}",
                           hint="fix sqlalchemy.url (or the URL env.py builds)")
    if (during_upgrade and isinstance(error, sa_exc.DBAPIError)
            and error.connection_invalidated):
        original = getattr(error, "orig", None) or error
        return DatabaseError(
            "the connection to the database was lost during the upgrade: "
            f"{mask_passwords(_first_line(original))}",
            hint="what the database committed stays, the rest was rolled back; run "
                 "`alembic-autocopy upgrade` again to finish")
    if isinstance(error, (sa_exc.DBAPIError, ConnectionError, TimeoutError)):
        original = getattr(error, "orig", None) or error
        message = mask_passwords(_first_line(original))
        if not during_upgrade:
            message = f"{_configured_url(project)}{message}"
        return DatabaseError(
            f"cannot use the database: {message}",
            hint="check that the database server runs and that sqlalchemy.url "
                 f"in {where} (or the URL env.py uses) is right")
    if isinstance(error, ModuleNotFoundError):
        return DatabaseError(
            f"env.py needs a module that is not installed: {error.name}",
            hint=f"install it in this environment (pip install {error.name})")
    if isinstance(error, CommandError):
        return AutocopyError(f"alembic: {text}")
    if isinstance(error, FileNotFoundError):
        return ConfigError(f"{text}", hint=f"check script_location in {where}")
    kind = type(error).__name__
    return AutocopyError(f"env.py failed: {kind}: {text}",
                         hint="run again with --traceback to see where")


def _configured_url(project: ProjectConfig) -> str:
    """``"<url, password masked>: "`` from sqlalchemy.url, or "" (env.py may build its own)."""
    try:
        url = alembic_config(project).get_main_option("sqlalchemy.url")
    except Exception:  # an unreadable config is reported elsewhere
        return ""
    return f"{mask_passwords(url)}: " if url else ""


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(error).__name__
