"""A hermetic environment for git, Alembic and the tool under test."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: The checkout's ``src/``: subprocesses import alembic_autocopy from HERE, not from
#: whatever copy happens to be installed.
SRC_DIR = Path(__file__).resolve().parents[2] / "src"

FIXED_GIT_DATE = "2024-01-02T03:04:05+00:00"
AUTHOR_NAME = "Autocopy Tester"
AUTHOR_EMAIL = "tester@example.invalid"

#: git variables a developer's shell or a git hook may export; any of them would point the
#: tests' git calls at the wrong repository or configuration.
_KEEP_GIT_VARIABLES = frozenset({"GIT_EXEC_PATH"})

_GITCONFIG = f"""\
[user]
\tname = {AUTHOR_NAME}
\temail = {AUTHOR_EMAIL}
[init]
\tdefaultBranch = main
[commit]
\tgpgsign = false
[tag]
\tgpgsign = false
[advice]
\tdetachedHead = false
[protocol "file"]
\tallow = always
"""


def hermetic_overrides(home: Path, environ: Mapping[str, str]) -> dict[str, str | None]:
    """Changes to ``environ`` (None = remove) that isolate a test from the machine and user.

    Writes ``home/.gitconfig``; ``home`` becomes HOME.
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text(_GITCONFIG, encoding="utf-8")
    overrides: dict[str, str | None] = {
        name: None
        for name in environ
        if name.startswith("GIT_") and name not in _KEEP_GIT_VARIABLES
    }
    overrides.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": AUTHOR_NAME,
            "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
            "GIT_COMMITTER_NAME": AUTHOR_NAME,
            "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL,
            "GIT_AUTHOR_DATE": FIXED_GIT_DATE,
            "GIT_COMMITTER_DATE": FIXED_GIT_DATE,
            "GIT_EDITOR": "false",
            "GIT_TERMINAL_PROMPT": "0",
            # Messages in English, so tests may match git's and Alembic's texts.
            "LC_ALL": "C.UTF-8",
            "LANGUAGE": None,
            "TZ": "UTC",
            "PYTHONPATH": _pythonpath(environ.get("PYTHONPATH")),
            "ALEMBIC_CONFIG": None,
        }
    )
    return overrides


def _pythonpath(current: str | None) -> str:
    return os.pathsep.join([str(SRC_DIR), *([current] if current else [])])
