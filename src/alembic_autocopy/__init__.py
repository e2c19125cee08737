"""alembic-autocopy: many git worktrees, one Alembic database, no "Can't locate revision".

The command line is ``alembic-autocopy``; see ``alembic-autocopy --help``.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
