"""The index's file: sections read on demand, written whole with temp file + ``os.replace``.

Layout: ``MAGIC``, the schema tag line, the table's length and CRC (``%08x %08x\\n``), the
table (``marshal`` of ``{"folders": {folder: section}, "trees": {key: section}, "contents":
section}``, each section ``(offset, length, crc)``), then the sections' bytes, each a
``marshal`` of plain tuples guarded by its own CRC so that corrupt bytes never reach
``marshal.loads``. A run loads the table and then only the sections it uses: ``check`` in
one worktree of a 40-worktree fleet decodes its own folder, not the fleet's (issue 15:
its peak memory no longer grows with the fleet). A section's bytes are copied unchanged
when the file is written again.

The open file's descriptor is kept for the life of the ``IndexFile``: another process may
replace the file meanwhile, and this one keeps reading the version it opened.
"""

# Annotations evaluated, not strings (no `from __future__ import annotations`): a NamedTuple
# compiles each string field's type at import (tests/test_imports.py says why).

import contextlib
import errno
import gc
import marshal
import os
import sys
import time
import weakref
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from alembic_autocopy.core import __version__

# Imported inside functions, as each saves >= 5 ms where skipped: fcntl or msvcrt: whichever this
# platform has.

SCHEMA = 3
MAGIC = b"alembic-autocopy index\n"
# Changes whenever the layout, the tool (its parser) or marshal's format may differ.
SCHEMA_TAG = f"{SCHEMA}/{__version__}/{marshal.version}".encode()
LOCK_WAIT_SECONDS = 2.0

# On disk, per folder: names, sizes, mtimes, ctimes, inodes, blob ids (parallel tuples).
FolderColumns = tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...],
                      tuple[int, ...], tuple[str, ...]]
# A tree's files: paths and blob ids (parallel tuples of interned strings).
TreeColumns = tuple[tuple[str, ...], tuple[str, ...]]
# revision, down_revisions, branch_labels, depends_on, message, sha256, size
ContentRow = tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], str | None, str, int]
# Contents by blob id, and why the others are no migration.
Contents = tuple[dict[str, ContentRow], dict[str, str]]


class Damaged(Exception):
    """The file (or one section of it) cannot be used: the index is rebuilt."""


class OpenFile:
    """A descriptor closed when nothing refers to it any more (sections of a file replaced
    on disk since may still be copied into the next one)."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        weakref.finalize(self, os.close, descriptor)


class Section(NamedTuple):
    """Where one table's bytes lie in an open index file."""

    source: OpenFile
    offset: int
    length: int
    crc: int

    def raw(self) -> bytes:
        data = os.pread(self.source.descriptor, self.length, self.offset)
        if len(data) != self.length or zlib.crc32(data) != self.crc:
            raise Damaged("index damaged (checksum mismatch)")
        return data

    def load(self) -> Any:
        return loads(self.raw())


class IndexFile:
    """An index file opened for reading: its table of sections."""

    def __init__(self, source: OpenFile) -> None:
        self.source = source
        self.folders: dict[str, Section] = {}
        self.trees: dict[str, Section] = {}
        self.contents: Section | None = None

    @property
    def identity(self) -> tuple[int, int, int]:
        info = os.fstat(self.source.descriptor)
        return info.st_ino, info.st_size, info.st_mtime_ns


def open_index(path: Path) -> IndexFile:
    """The file at ``path``; raises OSError, or Damaged (why it cannot be used)."""
    return _read_table(OpenFile(os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))))


def _read_table(source: OpenFile) -> IndexFile:
    head = os.pread(source.descriptor, len(MAGIC) + len(SCHEMA_TAG) + 20, 0)
    if not head.startswith(MAGIC):
        raise Damaged("not an index file")
    tag_end = head.find(b"\n", len(MAGIC))
    tag = head[len(MAGIC):tag_end] if tag_end >= 0 else head[len(MAGIC):]
    if tag_end < 0 or tag != SCHEMA_TAG:
        raise Damaged(f"index written by another version ({tag.decode(errors='replace')})")
    try:
        length, crc = (int(part, 16) for part in head[tag_end + 1:tag_end + 19].split(b" "))
    except ValueError:
        raise Damaged("index damaged (unreadable)") from None
    start = tag_end + 19
    table: Any = Section(source, start, length, crc).load()
    if not (isinstance(table, dict) and isinstance(table.get("folders"), dict)
            and isinstance(table.get("trees"), dict)):
        raise Damaged("index damaged (unexpected layout)")
    index_file = IndexFile(source)
    base = start + length
    if os.fstat(source.descriptor).st_size != base + table.get("size", -1):
        raise Damaged("index damaged (truncated)")

    def section(place: Any) -> Section:
        if not (isinstance(place, tuple) and len(place) == 3):
            raise Damaged("index damaged (unexpected layout)")
        return Section(source, base + place[0], place[1], place[2])

    index_file.folders = {key: section(place) for key, place in table["folders"].items()}
    index_file.trees = {key: section(place) for key, place in table["trees"].items()}
    index_file.contents = section(table["contents"]) if table.get("contents") else None
    return index_file


def loads(data: bytes) -> Any:
    # marshal builds many tuples, which would trigger the cyclic garbage collector again
    # and again (they hold no cycles): ~35% of the load time of a fleet's folder.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return marshal.loads(data)
    except (ValueError, EOFError, TypeError):
        raise Damaged("index damaged (unreadable)") from None
    finally:
        if collecting:
            gc.enable()


# Each section to write: bytes already encoded, or a value to marshal.
Piece = bytes | Section | object


def encode(folders: dict[str, Piece], trees: dict[str, Piece], contents: Piece) -> bytes:
    """The whole file; a ``Section`` is copied as it lies on disk."""
    chunks: list[bytes] = []
    offset = 0

    def place(piece: Piece) -> tuple[int, int, int]:
        nonlocal offset
        data = piece.raw() if isinstance(piece, Section) else marshal.dumps(piece)  # type: ignore[arg-type]
        chunks.append(data)
        where = (offset, len(data), zlib.crc32(data))
        offset += len(data)
        return where

    table = {"folders": {key: place(piece) for key, piece in folders.items()},
             "trees": {key: place(piece) for key, piece in trees.items()},
             "contents": place(contents), "size": 0}
    table["size"] = offset
    head = marshal.dumps(table)
    return b"".join([MAGIC, SCHEMA_TAG, b"\n", b"%08x %08x\n" % (len(head), zlib.crc32(head)),
                     head, *chunks])


def short_digest(text: str) -> str:
    """16 hex digits naming ``text`` in the index (a search's settings, a project's path):
    its CRC-32 and Adler-32. Names, not a defence: two of one user's texts agreeing on both
    is out of reach, and hashlib would cost every warm `find` ~4 ms of OpenSSL loading
    (bench/run.py, find on a small project)."""
    data = text.encode("utf-8", "surrogateescape")
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``lock_path``; yields False when another process keeps it
    longer than LOCK_WAIT_SECONDS (then this run simply does not save)."""
    with open(lock_path, "a+b") as handle:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while not _try_lock(handle.fileno()):
            if time.monotonic() > deadline:
                yield False
                return
            time.sleep(0.02)
        try:
            yield True
        finally:
            _unlock(handle.fileno())


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
