"""Errors a user can meet, each with what happened and what to do next.

Layers: boundary modules raise these with data attached; ``main`` turns them into one line
(plus a hint) and an exit code. Anything else that escapes is a bug (exit 3).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # could not complete: unresolved, conflict, database unreachable, ...
EXIT_USAGE = 2  # bad arguments or configuration
EXIT_INTERNAL = 3  # a bug in this tool
EXIT_INTERRUPTED = 130

#: The hint of a failure whose traceback shows where it happened, in the command line's
#: words; the Python API, which has no --traceback, says it in its own (``workflow/api.py``).
TRACEBACK_HINT = "run again with --traceback to see where"


class AutocopyError(Exception):
    """An expected failure. ``str(error)`` is the one-line message; ``hint`` the next step."""

    exit_code = EXIT_FAILED
    warnings: tuple[str, ...] = ()  # noticed on the way; each shown on its own line first

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(AutocopyError):
    """The Alembic or tool configuration is missing or invalid (exit 2)."""

    exit_code = EXIT_USAGE


class UsageError(AutocopyError):
    """The command line is wrong (exit 2)."""

    exit_code = EXIT_USAGE


class GitError(AutocopyError):
    """A git command failed; carries the command and what git said."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str,
                 cwd: str | None = None) -> None:
        shown = " ".join(args)
        detail = (stderr.strip() or stdout.strip()).splitlines()
        first = detail[0] if detail else "(no output)"
        super().__init__(f"git failed ({returncode}): {shown}: {first}")
        self.args_list = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.cwd = cwd


class DatabaseError(AutocopyError):
    """The database could not be reached or refused an operation."""


class PlacementError(AutocopyError):
    """A file could not be placed without risking the user's files."""


class PlanBlocked(AutocopyError):
    """The plan cannot be carried out (unresolved revisions or a conflict). ``warnings``:
    what the search noticed that may explain a revision found nowhere (a worktree gone, a
    source offline), never glued onto the hint."""

    def __init__(self, message: str, plan: object, hint: str | None = None,
                 warnings: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint)
        self.plan = plan
        self.warnings = warnings


class MigrationParseError(Exception):
    """A file is not a migration this tool can read without running it (reason in str)."""
