"""One version folder on disk: which files Alembic would load from it, and reading one.

The loader rule is Alembic's (``*.py`` minus ``__init__.py`` and editor lock files,
sub-folders only when ``recursive_version_locations`` is set). Files are parsed, never
imported; a FIFO or a device named ``x.py`` is never waited on.
"""

# Annotations evaluated, not strings (no `from __future__ import annotations`): a NamedTuple
# compiles each string field's type at import (tests/test_imports.py says why).

import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from alembic_autocopy.core.errors import MigrationParseError
from alembic_autocopy.core.model import MigrationHeader, SkippedFile

# Imported inside functions, as each saves >= 5 ms where skipped: the parser (ast, tokenize) only
# when a file must be read, not on a warm index.

# Same as alembic.script.base._only_source_rev_file.
REVISION_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")


class ReadFile(NamedTuple):
    """A file read and parsed: the candidate's ingredients (cached by the index)."""

    header: MigrationHeader
    sha256: str
    size: int
    blob: str


# What reading gives for one file: its facts, or why not.
FileResult = ReadFile | MigrationParseError | OSError


class FolderRead:
    """One folder read: the files kept (relative to it, in Alembic's order), those behind a
    symlink or in a sub-folder, what was read for each, and the folders it could not list."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.linked: set[str] = set()
        self.results: list[FileResult] = []
        self.skipped: list[SkippedFile] = []


def read_migration_file(path: str | Path, max_bytes: int) -> ReadFile:
    """Read and parse one file; raise MigrationParseError or OSError."""
    from alembic_autocopy.core.parsing import blob_id, parse_migration, sha256_hex

    _info, content = read_content(os.fspath(path), max_bytes)
    header = parse_migration(content, max_bytes=max_bytes)
    return ReadFile(header, sha256_hex(content), len(content), blob_id(content))


def open_nonblocking(path: str, flags: int) -> int:
    """An ``opener`` that never waits: a FIFO named ``x.py`` (or a symlink to one) would
    otherwise block ``open`` until a writer comes. Regular files read as usual."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def read_content(path: str, max_bytes: int, folder: int | None = None
                 ) -> tuple[os.stat_result, bytes]:
    """The open file's stat and its bytes (``path`` relative to the folder descriptor
    ``folder`` if given); raises MigrationParseError (not a regular file, too large) or
    OSError."""
    # O_NONBLOCK: a FIFO named x.py never blocks the open.
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_BINARY", 0), dir_fd=folder)
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):  # (a symlink to a folder) said as open() says it
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(info.st_mode):
            raise MigrationParseError("not a regular file")
        if info.st_size > max_bytes:
            raise MigrationParseError(f"larger than {max_bytes} bytes")
        content = _read_all(descriptor, min(info.st_size, max_bytes) + 1)
    finally:
        os.close(descriptor)
    if len(content) > max_bytes:
        raise MigrationParseError(f"larger than {max_bytes} bytes")
    return info, content


def _read_all(descriptor: int, limit: int) -> bytes:
    """Up to ``limit`` bytes (one more than the size: a file that grew is seen growing)."""
    chunks = []
    while limit > 0:
        chunk = os.read(descriptor, limit)
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def open_folder(folder: str) -> int | None:
    """A descriptor of ``folder`` for ``dir_fd`` calls (None where there are none)."""
    if os.stat not in os.supports_dir_fd:  # pragma: no cover - Windows
        return None
    try:
        return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None


def migration_names(folder: str, recursive: bool,
                    skipped: list[SkippedFile]) -> Iterator[tuple[str, bool]]:
    """(path relative to ``folder``, behind a symlink or in a sub-folder) of each file
    Alembic would load from it (no symlinked folder followed)."""
    try:
        with os.scandir(folder) as iterator:
            entries = sorted(iterator, key=lambda e: e.name)
    except FileNotFoundError:
        return
    except OSError as error:
        skipped.append(SkippedFile(folder, f"cannot list folder: {error.strerror}"))
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if recursive and entry.name != "__pycache__":
                    for inner, _link in migration_names(entry.path, recursive, skipped):
                        yield os.path.join(entry.name, inner), True
                continue
        except OSError:
            continue
        if REVISION_FILE.match(entry.name):
            yield entry.name, entry.is_symlink()


def iter_migration_paths(folder: Path, recursive: bool,
                         skipped: list[SkippedFile]) -> Iterator[Path]:
    """Files Alembic would load from ``folder`` (no symlinked folders followed)."""
    for name, _link in migration_names(os.fspath(folder), recursive, skipped):
        yield folder / name
