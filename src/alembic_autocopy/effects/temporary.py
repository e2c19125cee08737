"""Temporary files created whole, beside where their content is going.

``.<name>.<pid>.<n>.aac-tmp``: the process id tells a later run which ones a killed run left
(``placement.remove_stale_temporaries``), the suffix keeps Alembic from loading them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from pathlib import Path

TEMP_SUFFIX = ".aac-tmp"
TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")

_NUMBERS = itertools.count()
_NEW_FILE = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def write_replacing(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` whole, or is left as it was: written to a new temporary
    beside it, then renamed over it; the temporary is removed when anything fails."""
    handle, temporary = new_temporary(path.parent, path.name)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def new_temporary(folder: Path, name: str) -> tuple[int, str]:
    """A new file in ``folder`` for ``name`` (``.<name>.<pid>.<n>.aac-tmp``: a killed run's
    are found by their process id), open for writing, with the mode the umask gives a new
    file (as git gives a file it checks out). Never an existing file or symlink: created
    exclusively, the next number tried when the name is taken. Not ``mkstemp``: its random
    names and the ``chmod`` after cost ~30 ms on a repair of 500 copies, and the tempfile
    module (with shutil) ~3 ms of every warm `find` (bench/run.py, find on a small project)."""
    while True:
        temporary = os.path.join(folder, f".{name}.{os.getpid()}.{next(_NUMBERS)}"
                                         f"{TEMP_SUFFIX}")
        try:
            return os.open(temporary, _NEW_FILE, 0o644), temporary
        except FileExistsError:
            continue
