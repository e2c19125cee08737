"""Helpers for alembic-autocopy's tests: real git repositories, real Alembic projects,
real databases. Nothing here is a mock.

Import from this package (``from support import make_repo``); the fixtures that use these
helpers live in ``tests/conftest.py``.
"""

from __future__ import annotations

from support.databases import Database
from support.process import CommandFailed, run
from support.project import (
    Repo,
    Worktree,
    integrate_env_py,
    make_repo,
    one_id_two_contents,
    use_the_application_engine,
)
from support.revisions import BASE_REV, rev_id, rev_ids

__all__ = [
    "BASE_REV",
    "CommandFailed",
    "Database",
    "Repo",
    "Worktree",
    "integrate_env_py",
    "make_repo",
    "one_id_two_contents",
    "rev_id",
    "rev_ids",
    "run",
    "use_the_application_engine",
]
