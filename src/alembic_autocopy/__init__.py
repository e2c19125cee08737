"""alembic-autocopy: many git worktrees, one Alembic database, no "Can't locate revision".

The command line is ``alembic-autocopy``; see ``alembic-autocopy --help``. From Python::

    from alembic_autocopy import ensure_database_current
    report = ensure_database_current("alembic.ini")  # raises AutocopyFailed on failure

The API is loaded on first use, so ``import alembic_autocopy`` stays cheap.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every start)
if TYPE_CHECKING:
    from typing import Any

    from alembic_autocopy.api import (
        AutocopyFailed,
        BroughtIn,
        DatabaseReport,
        ensure_database_current,
    )
    from alembic_autocopy.errors import AutocopyError

__version__ = "0.1.0"
__all__ = [
    "AutocopyError",
    "AutocopyFailed",
    "BroughtIn",
    "DatabaseReport",
    "__version__",
    "ensure_database_current",
]

_LAZY = {
    "AutocopyFailed": "alembic_autocopy.api",
    "BroughtIn": "alembic_autocopy.api",
    "DatabaseReport": "alembic_autocopy.api",
    "ensure_database_current": "alembic_autocopy.api",
    "AutocopyError": "alembic_autocopy.errors",
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
