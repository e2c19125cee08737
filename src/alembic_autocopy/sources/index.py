"""A persistent index of parsed migrations, so a run with nothing new reads no file twice.

Three tables, each keyed by something that changes whenever the content may have changed:

- files, by folder then name: (size, mtime_ns, ctime_ns, inode) -> the content's git blob id;
- contents, by git blob id: the parsed header, sha256 and size (or why it is no migration),
  shared by every file and every git object with the same bytes;
- trees, by tree id (or ``<commit>:<folder>``, just as immutable): the blob id of every file
  under a folder of that commit, so neither the committed check nor a git ref needs git twice.

It lives where git keeps per-repository data (``<git common dir>/alembic-autocopy/index``),
or in the user's cache folder outside git, in the file format of ``indexfile`` (one section
per folder and per tree, each decoded only when a run uses it). It is written with temp file
+ ``os.replace`` under a file lock, after merging what another process wrote meanwhile. A
corrupt, foreign or deleted file is rebuilt silently: the index is a cache, and any failure
to read or write it only costs time.

Exactness: a file's entry is trusted only when size, mtime_ns, ctime_ns and inode all match,
and only if its ctime was already ``RACY_WINDOW_NS`` old when it was read. ctime cannot be set
by users and moves on every write, but file systems stamp it with a coarse clock: a second
edit in the same tick as the first would keep every stat field equal. Such a "racily clean"
file (git's term) is not recorded, so it is read again next time.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeGuard

from alembic_autocopy.core.errors import MigrationParseError
from alembic_autocopy.core.model import MigrationHeader, SkippedFile
from alembic_autocopy.effects import git
from alembic_autocopy.effects.project import ProjectConfig
from alembic_autocopy.effects.temporary import write_replacing
from alembic_autocopy.sources import indexfile
from alembic_autocopy.sources.folders import (
    REVISION_FILE,
    FileResult,
    FolderRead,
    ReadFile,
    open_folder,
    read_content,
)
from alembic_autocopy.sources.indexfile import ContentRow, FolderColumns, Section, TreeColumns

# Imported inside functions, as each saves >= 5 ms where skipped: the parser (ast, tokenize) only
# when a file must be read, not on a warm index.

# A file whose ctime is younger than this when it is read is not recorded (see module doc):
# larger than any timestamp granularity in use (FAT: 2 s; ext4/APFS/NTFS: one clock tick).
RACY_WINDOW_NS = 3_000_000_000
# Trees kept from earlier runs besides the ones used now: refs move on, old trees go.
MAX_TREES = 4096

# The wall clock, compared with files' ctime (tests may replace it: it is the only mock).
clock: Callable[[], int] = time.time_ns

# (size, mtime_ns, ctime_ns, inode, blob id)
FileEntry = tuple[int, int, int, int, str]


class IndexStats:
    """What the index saved this run (shown by ``-v`` and asserted by the tests)."""

    def __init__(self) -> None:
        self.hits = 0  # files answered from the index without reading them
        self.reads = 0  # files read (new, changed, or racily clean)
        self.parses = 0  # contents parsed (a content met twice is parsed once)
        self.saved = False
        self.rebuilt: str | None = None  # why the file on disk was not used, when it was not


class MigrationIndex:
    """The index of one repository (or one non-git project folder)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: keep in memory only (no place to write it)
        self.stats = IndexStats()
        self._stored = _Stored.empty()
        # What this run saw or added; written over the stored sections on save.
        self._folders: dict[str, dict[str, FileEntry]] = {}
        self._lookup: dict[str, dict[str, FileEntry]] = {}
        self._contents: dict[str, ContentRow] = {}
        self._failures: dict[str, str] = {}
        self._trees: dict[str, TreeColumns] = {}
        self._used_trees: set[str] = set()
        self._facts: dict[str, ReadFile] = {}
        self._dirty = False
        if path is not None:
            self._load(path)

    # ----------------------------------------------------------------------------- files

    def read_folder(self, folder: str, max_bytes: int, recursive: bool = False) -> FolderRead:
        """Every file Alembic would load from ``folder``: the index's answer for each file
        unchanged since it was recorded, the others read and parsed (and recorded).

        The hot path of a warm run: one listing, then one ``lstat`` per file relative to the
        folder's descriptor, compared with its entry; nothing else touches the disk. The
        ``lstat`` also tells what an entry is: a folder is left out (or, ``recursive``, read
        in turn), a symlink is followed.
        """
        read = FolderRead()
        try:
            names = sorted(os.listdir(folder))
        except FileNotFoundError:
            return read
        except OSError as error:
            read.skipped.append(SkippedFile(folder, f"cannot list folder: {error.strerror}"))
            return read
        if not recursive:  # sub-folders are left out anyway: only candidates are stat-ed
            names = [name for name in names if REVISION_FILE.match(name)]
        descriptor = open_folder(folder)
        try:
            self._read_names(folder, names, descriptor, max_bytes, recursive, read)
        finally:
            if descriptor is not None:
                os.close(descriptor)
        return read

    def _read_names(self, folder: str, names: list[str], descriptor: int | None,
                    max_bytes: int, recursive: bool, read: FolderRead) -> None:
        lookup, seen, known = self._lookup_of(folder), self._seen(folder), self._facts.get
        keep, append = read.names.append, read.results.append
        prefix = folder + os.sep
        hits = 0
        for name in names:
            try:
                info = (os.lstat(name, dir_fd=descriptor) if descriptor is not None
                        else os.lstat(prefix + name))
            except OSError as error:  # gone since the listing: said as a read would
                if REVISION_FILE.match(name):
                    keep(name)
                    append(error)
                continue
            entry = lookup.get(name)
            # An entry matches only the regular file it was recorded for (inode, ctime).
            if unchanged(entry, info) and info.st_size <= max_bytes:
                facts = known(entry[4])
                if facts is not None:
                    seen[name] = entry
                    keep(name)
                    append(facts)
                    hits += 1
                    continue
            self._read_entry(folder, name, info, max_bytes, recursive, read)
        self.stats.hits += hits

    def _read_entry(self, folder: str, name: str, info: os.stat_result, max_bytes: int,
                    recursive: bool, read: FolderRead) -> None:
        """One entry the quick check did not answer, by what its ``lstat`` says it is."""
        kind = stat.S_IFMT(info.st_mode)
        path = folder + os.sep + name
        if kind == stat.S_IFDIR:  # Alembic loads no folder named x.py
            if recursive and name != "__pycache__":
                self._read_sub_folder(path, name, max_bytes, read)
            return
        if recursive and not REVISION_FILE.match(name):
            return
        read.names.append(name)
        if kind == stat.S_IFLNK:
            read.linked.add(name)
            try:
                info = os.stat(path)
            except OSError as error:
                read.results.append(error)
                return
        read.results.append(self._check(folder, name, info, max_bytes))

    def _read_sub_folder(self, path: str, name: str, max_bytes: int, read: FolderRead) -> None:
        inner = self.read_folder(path, max_bytes, recursive=True)
        for sub_name in inner.names:
            read.names.append(name + os.sep + sub_name)
            read.linked.add(name + os.sep + sub_name)
        read.results += inner.results
        read.skipped += inner.skipped

    def _check(self, folder: str, name: str, info: os.stat_result, max_bytes: int
               ) -> FileResult:
        """The index's answer for one file whose stat is ``info``, else the file read."""
        entry = self._lookup_of(folder).get(name)
        try:
            if unchanged(entry, info) and info.st_size <= max_bytes:
                self._seen(folder)[name] = entry
                facts = self._facts_for(entry[4])  # raises when known not to be a migration
                if facts is not None:
                    self.stats.hits += 1
                    return facts
            return self._read(folder + os.sep + name, folder, name, max_bytes)
        except (MigrationParseError, OSError) as error:
            return error

    def read_file(self, path: str | Path, max_bytes: int) -> ReadFile:
        """One file through the index (followed if a symlink); raises MigrationParseError or
        OSError."""
        folder, name = os.path.split(os.fspath(path))
        result = self._check(folder, name, os.stat(path), max_bytes)
        if isinstance(result, Exception):
            raise result
        return result

    def _read(self, text: str, folder: str, name: str, max_bytes: int) -> ReadFile:
        # Imported here: a warm run reads no file, and hashlib loads OpenSSL (~4 ms; with
        # tempfile and shutil, which it no longer needs either, ~10 ms of `find` on a small
        # project: bench/run.py).
        from alembic_autocopy.core.digests import blob_id

        self.stats.reads += 1
        now = clock()
        info, content = read_content(text, max_bytes)
        return self._learn(folder, name,
                           (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino),
                           len(content), blob_id(content), now, content)

    def _learn(self, folder: str, name: str, info: tuple[int, int, int, int], length: int,
               blob: str, now: int, content: bytes) -> ReadFile:
        """What a file just read gives (raises MigrationParseError when it is no migration),
        and its entry recorded unless it may be racily clean.

        ``info``: (size, mtime_ns, ctime_ns, inode) of the open file; ``length``: the bytes
        read; ``blob``: their git blob id; ``now``: the clock before they were read.
        """
        trusted = info[2] < now - RACY_WINDOW_NS and length == info[0]
        if not trusted:
            self._seen(folder).pop(name, None)
            self._dirty = self._dirty or self._entry(folder, name) is not None
            return self.parse_blob(blob, content)
        try:
            facts: ReadFile | None = self.parse_blob(blob, content)
        except MigrationParseError:
            facts = None
        # facts.blob is the one shared string of this content: stored once on disk.
        entry = (*info, facts.blob if facts is not None else blob)
        if self._entry(folder, name) != entry:
            self._dirty = True
        self._seen(folder)[name] = entry
        if facts is None:
            raise MigrationParseError(self._failures[blob])
        return facts

    def _seen(self, folder: str) -> dict[str, FileEntry]:
        seen = self._folders.get(folder)
        if seen is None:
            seen = self._folders[folder] = {}
        return seen

    def _lookup_of(self, folder: str) -> dict[str, FileEntry]:
        """The index's entries of ``folder`` by name (its section decoded once per run)."""
        lookup = self._lookup.get(folder)
        if lookup is None:
            lookup = self._lookup[folder] = _rows(self._stored.folder(folder, self._damaged))
        return lookup

    def _entry(self, folder: str, name: str) -> FileEntry | None:
        return self._lookup_of(folder).get(name)

    # ----------------------------------------------------------------------------- contents

    def blob(self, blob_id: str) -> ReadFile | None:
        """The parsed content of a git blob, when known; raises MigrationParseError when it
        is known not to be a migration."""
        return self._facts_for(blob_id)

    def parse_blob(self, blob_id: str, content: bytes) -> ReadFile:
        """Parse ``content`` (whose git blob id is ``blob_id``) once, and remember it."""
        known = self._facts_for(blob_id)
        if known is not None:
            return known
        self.stats.parses += 1
        self._dirty = True
        outcome = _parse_content(content)
        if isinstance(outcome, str):
            self._failures[blob_id] = outcome
            raise MigrationParseError(outcome)
        self._contents[blob_id] = outcome
        return self._facts_of_row(blob_id, outcome)

    def _facts_for(self, blob_id: str) -> ReadFile | None:
        facts = self._facts.get(blob_id)
        if facts is not None:
            return facts
        stored_rows, stored_failures = self._stored.contents(self._damaged)
        failure = self._failures.get(blob_id) or stored_failures.get(blob_id)
        if failure is not None:
            self._failures[blob_id] = failure
            raise MigrationParseError(failure)
        row = self._contents.get(blob_id) or stored_rows.get(blob_id)
        if row is None:
            return None
        self._contents[blob_id] = row
        return self._facts_of_row(blob_id, row)

    def _facts_of_row(self, blob_id: str, row: ContentRow) -> ReadFile:
        header = MigrationHeader(row[0], row[1], row[2], row[3], row[4])
        facts = self._facts[blob_id] = ReadFile(header, row[5], row[6], blob_id)
        return facts

    # ----------------------------------------------------------------------------- trees

    def tree(self, key: str) -> dict[str, str] | None:
        """``{path: blob id}`` recorded for ``key`` (a tree id, or ``<commit>:<folder>``)."""
        columns = self.tree_columns(key)
        return None if columns is None else dict(zip(*columns, strict=True))

    def tree_columns(self, key: str) -> TreeColumns | None:
        """``tree(key)`` as two parallel tuples, paths and blob ids (no dict built: a fleet
        of refs holds tens of thousands of entries, of which a run keeps a few)."""
        columns = self._trees.get(key)
        if columns is None:
            columns = self._stored.tree(key, self._damaged)
        if columns is None:
            return None
        self._used_trees.add(key)
        return columns

    def remember_tree(self, key: str, entries: Mapping[str, str]) -> None:
        """Record ``{path: blob id}`` for an immutable ``key`` (tree id or commit:folder)."""
        intern = sys.intern
        self._trees[key] = (tuple(intern(path) for path in entries),
                            tuple(intern(blob) for blob in entries.values()))
        self._used_trees.add(key)
        self._dirty = True

    def committed_blobs(self, repository: Path, commit: str,
                        folders: tuple[str, ...]) -> dict[str, str]:
        """``{path from the worktree root: blob id}`` of every file under ``folders`` in
        ``commit`` (one ``git ls-tree`` the first time, none after)."""
        key = f"{commit}:{chr(0).join(folders)}"
        known = self.tree(key)
        if known is not None:
            return known
        found = git.tree_blobs(repository, commit, folders)
        self.remember_tree(key, found)
        return found

    # ----------------------------------------------------------------------------- disk

    def _load(self, path: Path) -> None:
        try:
            self._stored = _Stored.open(path)
        except FileNotFoundError:
            self.stats.rebuilt = "no index yet"
        except OSError as error:
            self.stats.rebuilt = f"cannot read the index: {error.strerror}"
        except indexfile.Damaged as error:
            self.stats.rebuilt = str(error)
            self._dirty = True

    def _damaged(self, why: str) -> None:
        """A section could not be decoded: forget every stored one (rebuilt on save)."""
        self.stats.rebuilt = self.stats.rebuilt or why
        self._stored = _Stored.empty(self._stored.identity)
        self._dirty = True

    def save(self) -> bool:
        """Write the index if this run learnt anything; never raises (it is only a cache)."""
        if not self._dirty or self.path is None:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with indexfile.locked(self.path.with_name(self.path.name + ".lock")) as locked:
                if not locked:
                    return False
                self._merge_concurrent_writes(self.path)
                write_replacing(self.path, self._encode())
        except OSError:
            return False
        self._dirty = False
        self.stats.saved = True
        return True

    def _merge_concurrent_writes(self, path: Path) -> None:
        """Another process may have saved since we loaded: keep what it learnt too."""
        try:
            theirs = _Stored.open(path)
        except (OSError, indexfile.Damaged):
            return
        if theirs.identity != self._stored.identity:
            self._stored = self._stored.merged_with(theirs)

    def _encode(self) -> bytes:
        folders: dict[str, object] = dict(self._stored.folders)
        for folder, entries in self._folders.items():
            # A folder read this run is replaced: files gone from it are forgotten.
            if entries:
                folders[folder] = _columns(entries)
            else:
                folders.pop(folder, None)
        trees: dict[str, object] = {**self._stored.trees, **self._trees}
        if len(trees) > MAX_TREES + len(self._used_trees):
            kept = [key for key in trees if key not in self._used_trees]
            kept = kept[len(kept) - MAX_TREES:]
            trees = {key: trees[key] for key in [*kept, *self._used_trees] if key in trees}
        try:
            contents = self._referenced_contents(folders, trees)
            return indexfile.encode(folders, trees, contents)
        except indexfile.Damaged as error:  # a stored section: write this run's alone
            self._damaged(str(error))
            return self._encode()

    def _referenced_contents(self, folders: Mapping[str, object],
                             trees: Mapping[str, object]) -> indexfile.Contents:
        """The contents some file or tree still refers to (the others are dropped)."""
        referenced: set[str] = set(self._contents) | set(self._failures)
        for columns in folders.values():
            referenced.update(_loaded(columns)[5])
        for columns in trees.values():
            referenced.update(_loaded(columns)[1])
        rows, failures = self._stored.contents(self._damaged)
        return ({blob: row for blob, row in {**rows, **self._contents}.items()
                 if blob in referenced},
                {blob: why for blob, why in {**failures, **self._failures}.items()
                 if blob in referenced})


def _loaded(piece: object) -> tuple[tuple[str, ...], ...]:
    """A table to write, decoded if it is still a stored section (only to list its blobs)."""
    loaded: tuple[tuple[str, ...], ...] = (piece.load() if isinstance(piece, Section)
                                            else piece)  # type: ignore[assignment]
    return loaded


class _Stored:
    """The sections of the index file(s) this run started from, decoded on demand."""

    def __init__(self, folders: dict[str, Section], trees: dict[str, Section],
                 contents: list[Section], identity: tuple[int, int, int] | None) -> None:
        self.folders = folders
        self.trees = trees
        self._contents_sections = contents
        self._contents: indexfile.Contents | None = None
        self.identity = identity

    @classmethod
    def empty(cls, identity: tuple[int, int, int] | None = None) -> _Stored:
        return cls({}, {}, [], identity)

    @classmethod
    def open(cls, path: Path) -> _Stored:
        opened = indexfile.open_index(path)
        contents = [opened.contents] if opened.contents is not None else []
        return cls(opened.folders, opened.trees, contents, opened.identity)

    def merged_with(self, theirs: _Stored) -> _Stored:
        """These sections under another process's newer ones."""
        return _Stored({**self.folders, **theirs.folders}, {**self.trees, **theirs.trees},
                       [*self._contents_sections, *theirs._contents_sections], theirs.identity)

    def folder(self, folder: str, damaged: Callable[[str], None]) -> FolderColumns | None:
        section = self.folders.get(folder)
        return None if section is None else _decoded(section, damaged)

    def tree(self, key: str, damaged: Callable[[str], None]) -> TreeColumns | None:
        section = self.trees.get(key)
        return None if section is None else _decoded(section, damaged)

    def contents(self, damaged: Callable[[str], None]) -> indexfile.Contents:
        if self._contents is None:
            rows: dict[str, ContentRow] = {}
            failures: dict[str, str] = {}
            for section in self._contents_sections:
                decoded = _decoded(section, damaged)
                if decoded is not None:
                    rows.update(decoded[0])
                    failures.update(decoded[1])
            self._contents = rows, failures
        return self._contents


def _decoded(section: Section, damaged: Callable[[str], None]) -> Any:
    try:
        return section.load()
    except indexfile.Damaged as error:
        damaged(str(error))
        return None


def _parse_content(content: bytes) -> ContentRow | str:
    """What the index keeps of a content: its row, or why it is no migration."""
    # Imported here: a warm run, which parses nothing, never pays for the parser.
    from alembic_autocopy.core.parsing import parse_migration, sha256_hex

    try:
        header = parse_migration(content)
    except MigrationParseError as error:
        return str(error)
    return (header.revision, header.down_revisions, header.branch_labels, header.depends_on,
            header.message, sha256_hex(content), len(content))


def unchanged(entry: FileEntry | None, info: os.stat_result) -> TypeGuard[FileEntry]:
    """The index's exactness rule, in one place: an entry answers for a file only when its
    size, mtime_ns, ctime_ns and inode all match the file's stat (ctime first: every write
    moves it, and nobody can set it back)."""
    return (entry is not None and entry[2] == info.st_ctime_ns
            and entry[1] == info.st_mtime_ns and entry[0] == info.st_size
            and entry[3] == info.st_ino)


def _rows(columns: object) -> dict[str, FileEntry]:
    if not (isinstance(columns, tuple) and len(columns) == 6):
        return {}
    names, sizes, mtimes, ctimes, inodes, blobs = columns
    return dict(zip(names, zip(sizes, mtimes, ctimes, inodes, blobs, strict=True), strict=True))


def _columns(entries: Mapping[str, FileEntry]) -> FolderColumns:
    # Interned: the same names and blob ids in every worktree are written once (references).
    names = tuple(sys.intern(name) for name in entries)
    rows = [entries[name] for name in names]
    return (names, tuple(r[0] for r in rows), tuple(r[1] for r in rows),
            tuple(r[2] for r in rows), tuple(r[3] for r in rows),
            tuple(sys.intern(r[4]) for r in rows))


# --------------------------------------------------------------------------------- location

_OPEN: dict[str, MigrationIndex] = {}

# Set to a non-empty value to run without the index (nothing read, nothing written).
DISABLE_VARIABLE = "ALEMBIC_AUTOCOPY_NO_INDEX"


def index_path(project: ProjectConfig) -> Path:
    """``<git common dir>/alembic-autocopy/index``, or a file in the user's cache folder."""
    common = git.locate(project.here)[1]
    if common is not None:
        return common / "alembic-autocopy" / "index"
    return user_cache_dir() / f"index-{indexfile.short_digest(str(project.here.resolve()))}"


def user_cache_dir() -> Path:
    """The per-user cache folder of this tool, as each platform defines it."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "alembic-autocopy" / "Cache"
    if sys.platform == "darwin":  # pragma: no cover - exercised on macOS only
        return Path.home() / "Library" / "Caches" / "alembic-autocopy"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alembic-autocopy"


def open_for(project: ProjectConfig) -> MigrationIndex:
    """The index of ``project``'s repository, loaded once per process (every source of one
    run, file scan and git objects alike, shares it)."""
    if os.environ.get(DISABLE_VARIABLE):
        return MigrationIndex(None)
    path = index_path(project)
    key = os.fspath(path)
    index = _OPEN.get(key)
    if index is None:
        index = _OPEN[key] = MigrationIndex(path)
    return index


def forget_open_indexes() -> None:
    """Drop the in-process copies (the next ``open_for`` reloads from disk)."""
    _OPEN.clear()
