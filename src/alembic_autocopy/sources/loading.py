"""Alembic's own loading, for this worktree's files the static reader cannot decide.

``parsing`` refuses a header that only running the file could tell (``from x import *``
above it, ``branch_labels = (cli.EXPAND_BRANCH,)``, a name imported from a module). Alembic
imports every file of this worktree's version folders at each run anyway, with the
project's ``prepend_sys_path``: for THIS worktree's files only, the tool does the same and
reads the module's attributes, exactly as ``alembic.script.Script`` does. Files from every
other source (sibling worktrees, folders, git objects, the record table) are never run.

Importing this module imports nothing heavy; ``load_headers`` imports alembic (~340 ms),
only when such a file exists.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

from alembic_autocopy.core.errors import MigrationParseError
from alembic_autocopy.core.model import MigrationHeader
from alembic_autocopy.effects.project import ProjectConfig

# Imported inside functions, as each saves >= 5 ms where skipped: the parser only for headers
# Alembic must load.


def load_headers(project: ProjectConfig, paths: Iterable[str]
                 ) -> dict[str, MigrationHeader | str]:
    """For each path, the header Alembic reads by importing it, or why it cannot be loaded."""
    from alembic_autocopy.core.parsing import header_from_values

    wanted = list(paths)
    results: dict[str, MigrationHeader | str] = {}
    if not wanted:
        return results
    problem = _prepare_sys_path(project)
    try:
        from alembic.util import load_python_file
    except ImportError as error:  # pragma: no cover - alembic is a dependency
        return dict.fromkeys(wanted, f"alembic is not importable: {error}")
    for path in wanted:
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                module = load_python_file(os.path.dirname(path), os.path.basename(path))
            if not hasattr(module, "revision"):
                raise MigrationParseError("no `revision` attribute once loaded")
            results[path] = header_from_values(
                module.revision, getattr(module, "down_revision", None),
                getattr(module, "branch_labels", None), getattr(module, "depends_on", None),
                module.__doc__)
        except MigrationParseError as error:
            results[path] = str(error)
        except (Exception, SystemExit) as error:  # whatever the file raised when it ran
            text = str(error).strip().splitlines()
            detail = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
            if problem:
                detail += f" ({problem})"
            results[path] = f"Alembic's loading fails here too: {detail}"
    return results


def _prepare_sys_path(project: ProjectConfig) -> str | None:
    """Put the project's ``prepend_sys_path`` in front of sys.path, as Alembic does; the
    reason it could not be read, if any."""
    try:
        from alembic_autocopy.effects.database import alembic_config, script_directory

        script_directory(alembic_config(project))
    except Exception as error:  # only a hint for the message
        return f"the Alembic configuration could not be loaded: {error}"
    return None


def file_facts(path: str) -> tuple[bytes, int] | None:
    """The bytes and size of a file (None when it vanished meanwhile)."""
    try:
        content = Path(path).read_bytes()
    except OSError:
        return None
    return content, len(content)
