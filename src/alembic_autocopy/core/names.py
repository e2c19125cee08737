"""Which names from outside (git trees, record-table rows, other folders) may become files here.

A name read from a git tree (``git mktree`` accepts ``..`` and ``.``), a row of the record
table, or another folder is untrusted input: it decides where a file is written. Only a plain
file name that Alembic would load (``*.py``, not ``__init__*``, not an editor lock file),
below plain folder names when ``recursive_version_locations`` is set, is ever accepted.
Pure: no filesystem, no git.
"""

from __future__ import annotations

import re

# Same rule as alembic.script.base._only_source_rev_file.
_ALEMBIC_LOADS = re.compile(r"(?!\.\#|__init__)(.*\.py)$")
# C0 controls, DEL and C1 controls: never part of a name we write (a newline would also
# forge a line in the managed .gitignore, an ESC a terminal sequence).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def refusal(relative: str, *, recursive: bool) -> str | None:
    """Why ``relative`` (``/``-separated, below a version location) cannot be a copy's
    name, or None when it can."""
    if not relative:
        return "empty file name"
    if _CONTROL.search(relative):
        return "control character in the name"
    if "\\" in relative:
        return "backslash in the name"
    parts = relative.split("/")
    if len(parts) > 1 and not recursive:
        return "path separator in the name (recursive_version_locations is off)"
    for part in parts[:-1]:
        problem = _folder_refusal(part)
        if problem is not None:
            return problem
    name = parts[-1]
    if name in ("", ".", ".."):
        return f"{name!r} is not a file name"
    if name.startswith("__init__"):
        return "Alembic never loads __init__ files"
    if not _ALEMBIC_LOADS.fullmatch(name):
        return "not a file name Alembic loads (*.py)"
    return None


def _folder_refusal(part: str) -> str | None:
    if part in ("", ".", ".."):
        return f"folder name {part!r} leads outside the versions folder"
    if part == "__pycache__":
        return "Alembic never loads files in __pycache__"
    return None
