"""alembic-autocopy: many git worktrees, one Alembic database, no "Can't locate revision".

The command line is ``alembic-autocopy``; see ``alembic-autocopy --help``. From Python::

    from alembic_autocopy import ensure_database_current
    report = ensure_database_current("alembic.ini")  # raises AutocopyFailed on failure

The API is loaded on first use, so ``import alembic_autocopy`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alembic_autocopy.core import __version__

if TYPE_CHECKING:
    from alembic_autocopy.core.errors import AutocopyError
    from alembic_autocopy.workflow.api import (
        AutocopyFailed,
        BroughtIn,
        DatabaseReport,
        ensure_database_current,
    )

__all__ = [
    "AutocopyError",
    "AutocopyFailed",
    "BroughtIn",
    "DatabaseReport",
    "__version__",
    "ensure_database_current",
]

_LAZY = {
    "AutocopyFailed": "alembic_autocopy.workflow.api",
    "BroughtIn": "alembic_autocopy.workflow.api",
    "DatabaseReport": "alembic_autocopy.workflow.api",
    "ensure_database_current": "alembic_autocopy.workflow.api",
    "AutocopyError": "alembic_autocopy.core.errors",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'alembic_autocopy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
