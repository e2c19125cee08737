"""The Python API: make the database current from an application's start-up.

``ensure_database_current()`` does what ``alembic-autocopy upgrade`` does and returns what
happened, or raises ONE error type, :class:`AutocopyFailed`. It is safe to call from inside a
running event loop (a FastAPI lifespan): env.py's ``asyncio.run()`` is then run in a worker
thread. Importing this module stays cheap; Alembic and SQLAlchemy load on the first call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic_autocopy.core.errors import (
    EXIT_INTERNAL,
    TRACEBACK_HINT,
    AutocopyError,
    PlanBlocked,
)
from alembic_autocopy.core.model import Options
from alembic_autocopy.effects.project import load_project
from alembic_autocopy.workflow.events import repair

if TYPE_CHECKING:
    from alembic_autocopy.core.model import Plan

__all__ = ["AutocopyFailed", "BroughtIn", "DatabaseReport", "ensure_database_current"]

# How a caller of this API chooses one version of an id (``Options.prefer_wording``).
PREFER_WORDING = 'ensure_database_current(prefer=["{}"])'


class AutocopyFailed(AutocopyError):
    """The database could not be made current. ``str(error)`` says why, ``hint`` what to do.

    ``cause`` is the underlying error (an :class:`AutocopyError` for expected failures:
    configuration, database unreachable, a revision found nowhere...); ``plan`` is the repair
    plan when the failure is that it cannot be carried out (unresolved ids, conflicts).
    ``exit_code`` is the one the command line would have returned; ``warnings`` what the
    search noticed that may explain it (a worktree gone, a source offline).
    """

    def __init__(self, message: str, hint: str | None = None, *,
                 cause: BaseException | None = None, plan: Plan | None = None) -> None:
        super().__init__(message, hint)
        self.cause = cause
        self.plan = plan
        self.exit_code = getattr(cause, "exit_code", EXIT_INTERNAL)
        if isinstance(cause, AutocopyError):
            self.warnings = cause.warnings


@dataclass(frozen=True)
class BroughtIn:
    """One migration copied into this worktree."""

    revision: str
    source: str  # where it came from, e.g. "worktree /src/Proj-a (feature-a)"
    path: str | None  # where the copy is (None in a dry run)


@dataclass(frozen=True)
class DatabaseReport:
    """What ``ensure_database_current`` did (or, with ``dry_run``, would do)."""

    brought_in: tuple[BroughtIn, ...]  # parents first
    applied: tuple[str, ...]  # migrations run, in the order Alembic ran them
    heads: tuple[str, ...]  # the database's heads afterwards
    heads_before: tuple[str, ...]
    target: str  # "heads" when this worktree ended up with several heads
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.brought_in or self.applied) and not self.dry_run


def _stop_git_readers() -> None:
    """An application goes on after start-up: the `git cat-file` processes a search of git
    objects started are not left running until it exits (a command-line run keeps them to
    its end)."""
    gitobjects = sys.modules.get("alembic_autocopy.sources.gitobjects")
    if gitobjects is not None:
        gitobjects.close_readers()


def ensure_database_current(
    config: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = "alembic.ini",
    *,
    section: str = "alembic",
    x_args: Sequence[str] = (),
    prefer: Sequence[str] = (),
    target: str = "head",
    dry_run: bool = False,
    cwd: str | os.PathLike[str] | None = None,
) -> DatabaseReport:
    """Bring in every migration the database applied that this worktree lacks (with its whole
    ancestry), then upgrade the database to ``target`` once.

    ``config``: the Alembic configuration (an ini file, a ``pyproject.toml``, or both), as
    ``alembic -c``; relative to ``cwd`` (default: the current folder). When the default
    ``alembic.ini`` does not exist there, Alembic's own discovery applies (``ALEMBIC_CONFIG``,
    ``[tool.alembic]`` in ``pyproject.toml``). ``section``, ``x_args``: as ``alembic -n`` and
    ``-x``. ``prefer``: settles one id found with different contents (see ``--prefer``).

    Raises :class:`AutocopyFailed`, and nothing else, on failure. The application's logging
    configuration is restored afterwards (env.py's ``fileConfig()`` would otherwise disable
    every logger that existed before it ran).
    """

    folder = Path(cwd) if cwd is not None else Path.cwd()
    try:
        with _logging_preserved():
            project = load_project(_config_args(config, folder), section, x_args, cwd=folder)
            options = Options(prefer=tuple(prefer), dry_run=dry_run,
                              prefer_wording=PREFER_WORDING)
            result = repair(project, target, options)
    except PlanBlocked as error:
        plan: Any = error.plan
        raise AutocopyFailed(error.message, _api_hint(error.hint), cause=error,
                             plan=plan) from error
    except AutocopyError as error:
        raise AutocopyFailed(error.message, _api_hint(error.hint), cause=error) from error
    except Exception as error:
        raise AutocopyFailed(f"internal error in alembic-autocopy: {type(error).__name__}: "
                             f"{error}", "please report it with the traceback of `cause`",
                             cause=error) from error
    finally:
        _stop_git_readers()
    placed = {entry.revision: entry.path for entry in result.placed}
    brought = tuple(BroughtIn(c.revision, c.location.describe(), placed.get(c.revision))
                    for c in result.situation.plan.bring)
    return DatabaseReport(
        brought_in=brought,
        applied=tuple(result.applied),
        heads=tuple(result.heads_after) if not dry_run else tuple(result.situation.applied),
        heads_before=tuple(result.heads_before),
        target=result.target or target,
        dry_run=dry_run,
    )


# The API has no --traceback: the error's `cause` holds the traceback (chained to the
# exception env.py raised).
_API_TRACEBACK_HINT = ("see where in the traceback of the error's `cause` "
                       "(traceback.print_exception(error.cause))")


def _api_hint(hint: str | None) -> str | None:
    """A hint in the words of the API: what the command line says with ``--traceback``
    is in ``AutocopyFailed.cause``."""
    if hint is None:
        return None
    return hint.replace(TRACEBACK_HINT, _API_TRACEBACK_HINT)


def _config_args(config: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 folder: Path) -> list[str]:
    if isinstance(config, (str, os.PathLike)):
        configs = [os.fspath(config)]
    else:
        configs = [os.fspath(item) for item in config]
    if configs == ["alembic.ini"] and not (folder / "alembic.ini").is_file():
        return []  # the default name: let Alembic's discovery find pyproject.toml etc.
    return configs


@dataclass
class _LoggerState:
    disabled: bool
    level: int
    handlers: list[logging.Handler]
    propagate: bool


@contextlib.contextmanager
def _logging_preserved() -> Iterator[None]:
    """Undo what env.py's ``logging.config.fileConfig()`` does to a running application."""
    manager = logging.Logger.manager
    loggers: dict[str, logging.Logger] = {
        name: logger for name, logger in manager.loggerDict.items()
        if isinstance(logger, logging.Logger)}
    root = logging.getLogger()
    saved = {name: _LoggerState(logger.disabled, logger.level, list(logger.handlers),
                                logger.propagate) for name, logger in loggers.items()}
    saved_root = _LoggerState(root.disabled, root.level, list(root.handlers), root.propagate)
    try:
        yield
    finally:
        for name, logger in loggers.items():
            _restore(logger, saved[name])
        _restore(root, saved_root)


def _restore(logger: logging.Logger, state: _LoggerState) -> None:
    logger.disabled = state.disabled
    logger.setLevel(state.level)
    logger.propagate = state.propagate
    for handler in list(logger.handlers):
        if handler not in state.handlers:
            logger.removeHandler(handler)
    for handler in state.handlers:
        if handler not in logger.handlers:
            logger.addHandler(handler)
