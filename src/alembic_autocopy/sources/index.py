"""A persistent index of parsed migrations, so a run with nothing new reads no file twice.

Three tables, each keyed by something that changes whenever the content may have changed:

- files, by folder then name: (size, mtime_ns, ctime_ns, inode) -> the content's git blob id;
- contents, by git blob id: the parsed header, sha256 and size (or why it is no migration),
  shared by every file and every git object with the same bytes;
- trees, by tree id (or ``<commit>:<folder>``, just as immutable): the blob id of every file
  under a folder of that commit, so neither the committed check nor a git ref needs git twice.

It lives where git keeps per-repository data (``<git common dir>/alembic-autocopy/index``),
or in the user's cache folder outside git. It is written with temp file + ``os.replace`` under
a file lock, after merging what another process wrote meanwhile. The header carries a schema
tag that includes the tool's version, so an upgrade rebuilds it; a corrupt, foreign or deleted
file is rebuilt silently. The index is a cache: any failure to read or write it only costs
time.

Exactness: a file's entry is trusted only when size, mtime_ns, ctime_ns and inode all match,
and only if its ctime was already ``RACY_WINDOW_NS`` old when it was read. ctime cannot be set
by users and moves on every write, but file systems stamp it with a coarse clock: a second
edit in the same tick as the first would keep every stat field equal. Such a "racily clean"
file (git's term) is not recorded, so it is read again next time.

The format is ``marshal`` of plain tuples and strings, laid out in columns per folder: it loads
~4x faster than pickle and ~8x faster than JSON for a fleet of 20,000 files (measured for
docs/performance.md), needs no import, and is guarded by a CRC so corrupt bytes never reach
``marshal.loads``.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import marshal
import os
import stat
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from alembic_autocopy.core import __version__
from alembic_autocopy.core.errors import MigrationParseError
from alembic_autocopy.core.model import MigrationHeader
from alembic_autocopy.effects import git
from alembic_autocopy.effects.project import ProjectConfig
from alembic_autocopy.sources.scanning import ReadFile

TYPE_CHECKING = False  # typing's, without importing typing (see output.py)
if TYPE_CHECKING:
    from typing import Any, TypeGuard

SCHEMA = 2
MAGIC = b"alembic-autocopy index\n"
# Changes whenever the layout, the tool (its parser) or marshal's format may differ.
SCHEMA_TAG = f"{SCHEMA}/{__version__}/{marshal.version}".encode()
# A file whose ctime is younger than this when it is read is not recorded (see module doc):
# larger than any timestamp granularity in use (FAT: 2 s; ext4/APFS/NTFS: one clock tick).
RACY_WINDOW_NS = 3_000_000_000
# Trees kept from earlier runs besides the ones used now: refs move on, old trees go.
MAX_TREES = 4096
LOCK_WAIT_SECONDS = 2.0

# The wall clock, compared with files' ctime (tests may replace it: it is the only mock).
clock: Callable[[], int] = time.time_ns

# (size, mtime_ns, ctime_ns, inode, blob id)
FileEntry = tuple[int, int, int, int, str]
# On disk, per folder: names, sizes, mtimes, ctimes, inodes, blob ids (parallel tuples).
FolderColumns = tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...],
                      tuple[int, ...], tuple[str, ...]]
# A tree's files: paths and blob ids (parallel tuples of interned strings, so the paths and
# blobs that thousands of refs share are written once and loaded as references).
TreeColumns = tuple[tuple[str, ...], tuple[str, ...]]
# revision, down_revisions, branch_labels, depends_on, message, sha256, size
ContentRow = tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], str | None, str, int]


# What reading a folder gives for each file, in order: its facts, or why not.
_Results = list["ReadFile | MigrationParseError | OSError"]


@dataclass
class IndexStats:
    """What the index saved this run (shown by ``-v`` and asserted by the tests)."""

    hits: int = 0  # files answered from the index without reading them
    reads: int = 0  # files read (new, changed, or racily clean)
    parses: int = 0  # contents parsed (a content met twice is parsed once)
    saved: bool = False
    workers: int = 0  # processes forked to share the checks and reads (see read_listings)
    worker_reads: int = 0  # of the reads, files a worker read and parsed
    rebuilt: str | None = None  # why the file on disk was not used, when it was not


class MigrationIndex:
    """The index of one repository (or one non-git project folder)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: keep in memory only (no place to write it)
        self.stats = IndexStats()
        self._disk_identity: tuple[int, int, int] | None = None
        self._old_folders: dict[str, FolderColumns] = {}
        self._old_contents: dict[str, ContentRow] = {}
        self._old_failures: dict[str, str] = {}
        self._old_trees: dict[str, TreeColumns] = {}
        # What this run saw or added; merged over the old tables on save.
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

    def read_file(self, path: str | Path, max_bytes: int) -> ReadFile:
        """A ``scanning.FileReader``: the index's answer when the file is unchanged, else
        the file read and parsed (and recorded). Raises MigrationParseError or OSError."""
        text = os.fspath(path)
        folder, name = os.path.split(text)
        info = os.stat(text)
        entry = self._entry(folder, name)
        if unchanged(entry, info):
            if info.st_size > max_bytes:
                raise MigrationParseError(f"larger than {max_bytes} bytes")
            self._seen(folder)[name] = entry
            facts = self._facts_for(entry[4])  # raises when known not to be a migration
            if facts is not None:
                self.stats.hits += 1
                return facts
        return self._read(text, folder, name, max_bytes)

    def read_folder(self, folder: str, names: Sequence[str],
                    max_bytes: int) -> list[ReadFile | MigrationParseError | OSError]:
        """``read_file`` for each name in ``folder``, in order, errors returned, not raised.

        The hot path of a warm run: one ``stat`` per file, relative to the folder's
        descriptor (no path walk), compared with the entry; nothing else touches the disk.
        """
        results: list[ReadFile | MigrationParseError | OSError] = []
        append = results.append
        lookup = self._lookup_of(folder)
        seen = self._seen(folder)
        facts_by_blob = self._facts
        prefix = folder + os.sep
        descriptor = _open_folder(folder)
        stat_at = os.stat
        reads_before = self.stats.reads
        try:
            for name in names:
                try:
                    if descriptor is not None and os.sep not in name:
                        info = stat_at(name, dir_fd=descriptor)
                    else:
                        info = stat_at(prefix + name)
                    entry = lookup.get(name)
                    if unchanged(entry, info) and info.st_size <= max_bytes:
                        seen[name] = entry
                        facts = facts_by_blob.get(entry[4]) or self._facts_for(entry[4])
                        if facts is not None:
                            append(facts)
                            continue
                    sub_folder, sub_name = os.path.split(prefix + name)
                    append(self._read(prefix + name, sub_folder, sub_name, max_bytes))
                except (MigrationParseError, OSError) as error:
                    append(error)
        finally:
            if descriptor is not None:
                os.close(descriptor)
        self.stats.hits += len(names) - (self.stats.reads - reads_before)
        return results

    def read_listed(self, folder: str, names: Sequence[str], max_bytes: int
                    ) -> tuple[list[str], set[str], list[ReadFile | MigrationParseError | OSError]]:
        """``read_folder`` for names straight from a listing of ``folder`` (``os.listdir``,
        no sub-folder names: flat version locations).

        The ``lstat`` that checks a file against its entry also tells what it is, so the
        listing needs no ``DirEntry`` per file: a folder is left out, a symlink is followed
        (``read_file``). Returns the files kept, those behind a symlink, and their results.
        """
        kept: list[str] = []
        linked: set[str] = set()
        results: list[ReadFile | MigrationParseError | OSError] = []
        keep, append = kept.append, results.append
        lookup = self._lookup_of(folder)
        seen = self._seen(folder)
        facts_by_blob = self._facts
        prefix = folder + os.sep
        descriptor = _open_folder(folder)
        lstat = os.lstat
        kind_bits, folder_kind, link_kind = 0o170000, stat.S_IFDIR, stat.S_IFLNK
        hits = 0
        try:
            for name in names:
                try:
                    if descriptor is not None:
                        info = lstat(name, dir_fd=descriptor)
                    else:  # pragma: no cover - no dir_fd (Windows)
                        info = lstat(prefix + name)
                except OSError as error:  # gone since the listing: said as a read would
                    keep(name)
                    append(error)
                    continue
                kind = info.st_mode & kind_bits
                if kind == folder_kind:
                    continue  # Alembic loads no folder named x.py
                keep(name)
                try:
                    if kind == link_kind:
                        linked.add(name)
                        append(self.read_file(prefix + name, max_bytes))
                        continue
                    entry = lookup.get(name)
                    if unchanged(entry, info) and info.st_size <= max_bytes:
                        seen[name] = entry
                        facts = facts_by_blob.get(entry[4]) or self._facts_for(entry[4])
                        if facts is not None:
                            hits += 1
                            append(facts)
                            continue
                    append(self._read(prefix + name, folder, name, max_bytes))
                except (MigrationParseError, OSError) as error:
                    append(error)
        finally:
            if descriptor is not None:
                os.close(descriptor)
        self.stats.hits += hits  # (read_file counted the symlinks' own)
        return kept, linked, results

    def read_listings(self, folders: Sequence[str], max_bytes: int,
                      names_of: Callable[[str], list[str] | None],
                      done: Callable[[str], None] | None = None, workers: int | None = None
                      ) -> list[tuple[list[str], set[str], _Results]]:
        """``read_listed(folder, names_of(folder))`` for each folder, in order.

        ``names_of(folder)`` lists a folder: the names to read, or None when it could not be
        listed (it reports why itself). ``done(folder)`` is called as each folder is done.

        On a large fleet the work is shared with forked worker processes, one per spare
        core. Each takes its share of the folders, lists those it was not given listed, checks
        every file against the index with one ``lstat`` (all of a warm run), and reads and
        parses the regular files it did not find unchanged (all of a cold run); it writes
        nothing anywhere but sends back, per folder, the names, one verdict byte per file and
        what it read. This process does its own share meanwhile, then turns the workers'
        verdicts into results with the same bookkeeping as its own reads (it alone decides
        what is recorded, by its own clock) and reads itself whatever they left to it
        (symlinks, odd entries, anything that failed); a folder a worker could not list is
        listed here again (so that its error is reported). Threads cannot do this: the
        per-file Python work holds the GIL.

        A folder the index knows no file of is listed here first, so that the share it
        costs can be sized (on a cold run: every folder; listing is cheap next to reading)
        and it is never listed twice. ``workers``: how many to fork (default:
        ``parallel_workers`` decides, from the files known or listed in these folders).
        """
        known = [self._known_files([folder]) for folder in folders]
        listed: dict[int, list[str] | None] = {
            position: names_of(folder) for position, folder in enumerate(folders)
            if not known[position]}
        files = [len(listed[position] or ()) if position in listed else known[position]
                 for position in range(len(folders))]
        if workers is None:
            workers = parallel_workers(sum(files), len(folders))
        results: dict[int, tuple[list[str], set[str], _Results]] = {}
        # A folder that could not be listed here has nothing to share.
        shared = [position for position in range(len(folders))
                  if position not in listed or listed[position] is not None]
        if workers:
            # Each folder's cost for a worker, and what it costs here instead, in stat checks.
            work, own, collect = [], 0.0, 0.0
            for position in shared:
                cost = _COSTS_READ if position in listed else _COSTS_CHECK
                work.append(files[position] * cost[0])
                own += files[position] * cost[1]
                collect += files[position] * cost[2]
            total = max(sum(work), 1.0)
            shares = [[shared[i] for i in share]
                      for share in _shares(work, workers, own / total, collect / total)]
        else:
            shares = [shared]
        if len(shares) > 1 and listed:
            # Imported once here rather than in each worker: this process reads too.
            import alembic_autocopy.core.parsing  # noqa: F401
        # Before any worker reads: a file is trusted only if its ctime was old by then.
        now = clock()
        children = [self._fork_worker([(folders[i], listed.get(i)) for i in share], max_bytes,
                                      names_of)
                    for share in shares[1:]]
        self.stats.workers += sum(child is not None for child in children)

        def names(position: int) -> list[str]:
            if position in listed:
                return listed[position] or []
            return names_of(folders[position]) or []

        for position in range(len(folders)):
            if position not in shared:
                results[position] = ([], set(), [])
                if done is not None:
                    done(folders[position])
        # This process's own folders to read (listed here: unknown to the index) are read
        # as a worker reads them, but recorded after the workers' results: a content a
        # worker parsed is not parsed here again (a fleet's worktrees share most contents).
        own_reads: dict[int, tuple[list[str], bytes, list[_WorkerRead]]] = {}
        own_outcomes: dict[str, tuple[str, ContentRow | str | bytes | None]] = {}
        for position in shares[0]:
            folder = folders[position]
            if len(shares) > 1 and position in listed:
                own_names = listed[position] or []
                own_reads[position] = (own_names, *_check_and_read(
                    folder, own_names, self._lookup.get(folder) or {}, max_bytes,
                    self._knows_content, own_outcomes, parse=False))
                continue
            results[position] = self.read_listed(folder, names(position), max_bytes)
            if done is not None:
                done(folder)
        for share, child in zip(shares[1:], children, strict=True):
            given = [listed.get(position) for position in share]
            for position, checked in zip(share, _collect(child, given), strict=True):
                folder = folders[position]
                if checked is None:
                    results[position] = self.read_listed(folder, names(position), max_bytes)
                else:
                    results[position] = self._read_checked(folder, *checked, max_bytes,
                                                           now, by_worker=True)
                if done is not None:
                    done(folder)
        for position, checked in own_reads.items():
            folder = folders[position]
            results[position] = self._read_checked(folder, *checked, max_bytes, now,
                                                   by_worker=False)
            if done is not None:
                done(folder)
        return [results[position] for position in range(len(folders))]

    def _known_files(self, folders: Sequence[str]) -> int:
        """How many files the index holds for ``folders`` (what a warm run will check)."""
        known = 0
        for folder in folders:
            columns = self._old_folders.get(folder)
            if columns is not None:
                known += len(columns[0])
        return known

    def _fork_worker(self, folders: Sequence[tuple[str, list[str] | None]], max_bytes: int,
                     names_of: Callable[[str], list[str] | None]) -> tuple[int, int] | None:
        """Fork a process that lists the folders given without names, checks and reads their
        files (see ``_check_and_read``) and writes, per folder, ``(names, verdicts, read)``
        (names None when they were given) or None (could not list it) to a pipe; (pid,
        read end), or None when no process could be made."""
        try:
            reading, writing = os.pipe()
        except OSError:
            return None
        lookups = [self._lookup.get(folder) for folder, _names in folders]
        try:
            pid = os.fork()
        except OSError:
            os.close(reading)
            os.close(writing)
            return None
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            code = 70
            try:
                os.close(reading)
                gc.disable()  # short-lived: nothing to collect, no copy-on-write churn
                checked: list[_Checked | None] = []
                outcomes: dict[str, tuple[str, ContentRow | str | bytes | None]] = {}
                for (folder, given), lookup in zip(folders, lookups, strict=True):
                    names = names_of(folder) if given is None else given
                    if names is None:
                        checked.append(None)
                        continue
                    if lookup is None:
                        lookup = _rows(self._old_folders.get(folder))
                    verdicts, read = _check_and_read(folder, names, lookup, max_bytes,
                                                     self._knows_content, outcomes)
                    checked.append((names if given is None else None, verdicts, read))
                view = memoryview(marshal.dumps(checked))
                while view:
                    view = view[os.write(writing, view):]
                code = 0
            finally:
                os._exit(code)
        os.close(writing)
        return pid, reading

    def _read_checked(self, folder: str, names: list[str], verdicts: bytes,
                      read: list[_WorkerRead], max_bytes: int, now: int, by_worker: bool
                      ) -> tuple[list[str], set[str], _Results]:
        """``read_listed`` for a folder whose files a worker already checked, and read when
        not unchanged: an unchanged file is answered from the index and a file the worker
        read is recorded as ``_read`` would (``now``: this process's clock before the worker
        was forked), with no system call; anything else is looked at here exactly as
        ``read_listed`` would (its ``lstat`` again, then read if need be). ``by_worker``:
        a worker read them (``stats.worker_reads``), not this process (see read_listings)."""
        kept: list[str] = []
        linked: set[str] = set()
        results: _Results = []
        keep, append = kept.append, results.append
        lookup = self._lookup_of(folder)
        seen = self._seen(folder)
        facts_by_blob = self._facts
        hits = reads = 0
        next_read = iter(read).__next__
        for name, verdict in zip(names, verdicts, strict=True):
            if verdict == _UNCHANGED:
                entry = lookup[name]
                try:
                    facts = facts_by_blob.get(entry[4]) or self._facts_for(entry[4])
                except MigrationParseError as error:  # known not to be a migration
                    seen[name] = entry
                    keep(name)
                    append(error)
                    continue
                if facts is not None:
                    seen[name] = entry
                    hits += 1
                    keep(name)
                    append(facts)
                    continue
            elif verdict == _READ:
                size, mtime, ctime, inode, length, blob, outcome = next_read()
                if outcome is None:  # the index knew this content when the worker forked
                    outcome = self._known_outcome(blob)
                if outcome is not None:
                    reads += 1
                    keep(name)
                    try:
                        append(self._learn(folder, name, (size, mtime, ctime, inode), length,
                                           blob, now, outcome))
                    except MigrationParseError as error:
                        append(error)
                    continue
            elif verdict == _FOLDER:
                continue
            one_kept, one_linked, one_result = self.read_listed(folder, [name], max_bytes)
            kept += one_kept
            linked |= one_linked
            results += one_result
        self.stats.hits += hits
        self.stats.reads += reads
        if by_worker:
            self.stats.worker_reads += reads
        return kept, linked, results

    def _read(self, text: str, folder: str, name: str, max_bytes: int) -> ReadFile:
        self.stats.reads += 1
        now = clock()
        info, content = _read_content(text, max_bytes)
        return self._learn(folder, name,
                           (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino),
                           len(content), git.blob_id(content), now, content)

    def _learn(self, folder: str, name: str, info: tuple[int, int, int, int], length: int,
               blob: str, now: int, content: bytes | ContentRow | str) -> ReadFile:
        """What a file just read gives (raises MigrationParseError when it is no migration),
        and its entry recorded unless it may be racily clean.

        ``info``: (size, mtime_ns, ctime_ns, inode) of the open file; ``length``: the bytes
        read; ``blob``: their git blob id; ``now``: the clock before they were read;
        ``content``: the bytes (parsed unless the content is known), or the outcome of a
        worker's parse (``_parse_content``). By this process or a worker, one rule.
        """
        trusted = info[2] < now - RACY_WINDOW_NS and length == info[0]
        if not trusted:
            self._seen(folder).pop(name, None)
            self._dirty = self._dirty or self._entry(folder, name) is not None
            return self._content_facts(blob, content)
        try:
            facts: ReadFile | None = self._content_facts(blob, content)
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

    def _content_facts(self, blob: str, content: bytes | ContentRow | str) -> ReadFile:
        if isinstance(content, bytes):
            return self.parse_blob(blob, content)
        return self._facts_for(blob) or self._learn_content(blob, content)

    def _seen(self, folder: str) -> dict[str, FileEntry]:
        seen = self._folders.get(folder)
        if seen is None:
            seen = self._folders[folder] = {}
        return seen

    def _lookup_of(self, folder: str) -> dict[str, FileEntry]:
        """The index's entries of ``folder`` by name (built once per run from its columns)."""
        lookup = self._lookup.get(folder)
        if lookup is None:
            lookup = self._lookup[folder] = _rows(self._old_folders.get(folder))
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
        return self._learn_content(blob_id, _parse_content(content))

    def _learn_content(self, blob_id: str, outcome: ContentRow | str) -> ReadFile:
        """Remember a content newly parsed, here or by a worker: its row, or why it is no
        migration (then raise MigrationParseError)."""
        self.stats.parses += 1
        self._dirty = True
        if isinstance(outcome, str):
            self._failures[blob_id] = outcome
            raise MigrationParseError(outcome)
        self._contents[blob_id] = outcome
        header = MigrationHeader(outcome[0], outcome[1], outcome[2], outcome[3], outcome[4])
        facts = self._facts[blob_id] = ReadFile(header, outcome[5], outcome[6], blob_id)
        return facts

    def _knows_content(self, blob_id: str) -> bool:
        return (blob_id in self._facts or blob_id in self._contents
                or blob_id in self._failures or blob_id in self._old_contents
                or blob_id in self._old_failures)

    def _known_outcome(self, blob_id: str) -> ContentRow | str | None:
        """What the index knows of a content: its row, why it is no migration, or None."""
        return (self._contents.get(blob_id) or self._old_contents.get(blob_id)
                or self._failures.get(blob_id) or self._old_failures.get(blob_id))

    def _facts_for(self, blob_id: str) -> ReadFile | None:
        facts = self._facts.get(blob_id)
        if facts is not None:
            return facts
        failure = self._failures.get(blob_id) or self._old_failures.get(blob_id)
        if failure is not None:
            self._failures[blob_id] = failure
            raise MigrationParseError(failure)
        row = self._contents.get(blob_id) or self._old_contents.get(blob_id)
        if row is None:
            return None
        self._contents[blob_id] = row
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
            columns = self._old_trees.get(key)
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
            with open(path, "rb") as handle:
                info = os.fstat(handle.fileno())
                data = handle.read()
        except FileNotFoundError:
            self.stats.rebuilt = "no index yet"
            return
        except OSError as error:
            self.stats.rebuilt = f"cannot read the index: {error.strerror}"
            return
        self._disk_identity = (info.st_ino, info.st_size, info.st_mtime_ns)
        # marshal builds hundreds of thousands of tuples, which would trigger the cyclic
        # garbage collector again and again (they hold no cycles): ~35% of the load time.
        collecting = gc.isenabled()
        gc.disable()
        try:
            tables = decode(data)
        finally:
            if collecting:
                gc.enable()
        if isinstance(tables, str):
            self.stats.rebuilt = tables
            self._dirty = True
            return
        self._old_folders, self._old_contents, self._old_failures, self._old_trees = tables

    def save(self) -> bool:
        """Write the index if this run learnt anything; never raises (it is only a cache)."""
        if not self._dirty or self.path is None:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(self.path.with_name(self.path.name + ".lock")) as locked:
                if not locked:
                    return False
                self._merge_concurrent_writes(self.path)
                _write_atomically(self.path, encode(self._tables()))
        except OSError:
            return False
        self._dirty = False
        self.stats.saved = True
        return True

    def _merge_concurrent_writes(self, path: Path) -> None:
        """Another process may have saved since we loaded: keep what it learnt too."""
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return
        if (info.st_ino, info.st_size, info.st_mtime_ns) == self._disk_identity:
            return
        try:
            tables = decode(path.read_bytes())
        except OSError:
            return
        if isinstance(tables, str):
            return
        folders, contents, failures, trees = tables
        self._old_folders = {**self._old_folders, **folders}
        self._old_contents = {**self._old_contents, **contents}
        self._old_failures = {**self._old_failures, **failures}
        self._old_trees = {**self._old_trees, **trees}

    def _tables(self) -> Tables:
        folders = dict(self._old_folders)
        for folder, entries in self._folders.items():
            # A folder scanned this run is replaced: files gone from it are forgotten.
            if entries:
                folders[folder] = _columns(entries)
            else:
                folders.pop(folder, None)
        trees = {**self._old_trees, **self._trees}
        if len(trees) > MAX_TREES + len(self._used_trees):
            kept = [key for key in trees if key not in self._used_trees]
            kept = kept[len(kept) - MAX_TREES:]
            trees = {key: trees[key] for key in [*kept, *self._used_trees] if key in trees}
        referenced: set[str] = set(self._contents) | set(self._failures)
        for columns in folders.values():
            referenced.update(columns[5])
        for _paths, blobs in trees.values():
            referenced.update(blobs)
        contents = {blob: row for blob, row in {**self._old_contents, **self._contents}.items()
                    if blob in referenced}
        failures = {blob: reason for blob, reason in
                    {**self._old_failures, **self._failures}.items() if blob in referenced}
        return folders, contents, failures, trees


# One byte per file from a worker: look again here, unchanged, a folder, or read (what it
# read follows, in order).
_LOOK_AGAIN, _UNCHANGED, _FOLDER, _READ = 0, 1, 2, 3
# Below this many files a fork costs more than it saves (a fork and its pipe: ~1 ms here;
# 1,000 stat checks: ~3 ms). ``ALEMBIC_AUTOCOPY_PARALLEL_MIN_FILES`` overrides it.
PARALLEL_MIN_FILES = 4000
PARALLEL_VARIABLE = "ALEMBIC_AUTOCOPY_PARALLEL_MIN_FILES"
MAX_WORKERS = 3
# What a file costs, in a worker's stat checks (~3 µs here), when it is checked against the
# index and when it is read: (done by a worker, done here, collected here after a worker did
# it). A check here is one too; collecting its verdict is a dict lookup. A worker's read is an
# lstat, the read, the blob id and its share of the parses (each content new to that
# worker); one read here is parsed only if no worker parsed that content (see read_listings)
# and recorded like a worker's. The shares are sized so that this process and its workers
# finish together (measured on the benchmark fleet, docs/performance.md).
_COSTS_CHECK = (1.0, 1.0, 0.12)
_COSTS_READ = (6.5, 4.5, 0.6)

# What a worker read of one file: size, mtime_ns, ctime_ns, inode (of the open file), bytes
# read, blob id, and the parse's outcome (None: the index knew that content; bytes: not
# parsed yet, see ``_check_and_read``).
_WorkerRead = tuple[int, int, int, int, int, str, "ContentRow | str | bytes | None"]
# A worker's answer for one folder: the names it listed (None: it was given them), one
# verdict byte per name, and what it read, in order.
_Checked = tuple["list[str] | None", bytes, list[_WorkerRead]]


def parallel_workers(files: int, folders: int) -> int:
    """How many processes to fork for the stat checks of ``files`` files in ``folders``
    folders: one per spare core when there are enough files to pay for it, the platform can
    fork, and this process runs one thread (a fork copies only the calling thread: another
    thread's locks would stay held in the child)."""
    try:
        minimum = int(os.environ.get(PARALLEL_VARIABLE, PARALLEL_MIN_FILES))
    except ValueError:
        minimum = PARALLEL_MIN_FILES
    if folders < 2 or files < max(minimum, 1) or not hasattr(os, "fork"):
        return 0
    import threading

    if threading.active_count() != 1:
        return 0
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    return max(0, min(cores - 1, MAX_WORKERS, folders - 1))


def _shares(sizes: Sequence[float], workers: int, own_cost: float = _COSTS_CHECK[1],
            collect_cost: float = _COSTS_CHECK[2]) -> list[list[int]]:
    """Folder positions for this process (first, maybe none) and for each worker (none
    empty), in order, sized so that all finish together: ``sizes`` is each folder's cost
    for a worker; this process does its own at ``own_cost`` times that, and collects the
    workers' results at ``collect_cost`` times the cost each saved it."""
    total = sum(sizes)
    # own * own_cost + (total - own) * collect_cost == (total - own) / workers
    own = total * (1 / workers - collect_cost) / (own_cost - collect_cost + 1 / workers)
    own = min(max(own, 0.0), float(total))
    targets = [own] + [(total - own) / workers] * workers
    shares: list[list[int]] = [[] for _ in targets]
    bin_index, filled = 0, 0.0
    for position, size in enumerate(sizes):
        while bin_index < len(targets) - 1 and filled + size / 2 > targets[bin_index]:
            bin_index, filled = bin_index + 1, 0.0
        shares[bin_index].append(position)
        filled += size
    return [shares[0], *(share for share in shares[1:] if share)]


def _check_and_read(folder: str, names: Sequence[str], lookup: Mapping[str, FileEntry],
                    max_bytes: int, knows: Callable[[str], bool],
                    outcomes: dict[str, tuple[str, ContentRow | str | bytes | None]],
                    parse: bool = True) -> tuple[bytes, list[_WorkerRead]]:
    """A worker's work on one folder: one verdict byte per name, and what it read.

    ``_UNCHANGED`` when the file is the regular file its entry describes (size, mtime_ns,
    ctime_ns and inode all equal), ``_FOLDER`` for a folder (Alembic loads no folder named
    x.py), ``_READ`` for any other regular file, read as ``_read`` reads it, its blob id
    computed and its content parsed unless ``knows`` it or this worker parsed it already
    (``outcomes``: by blob id, one shared string and outcome each, which marshal then
    writes once); not ``parse``: its bytes instead, to be parsed later (unless a worker did).
    Anything else, and any file whose reading failed in any way, is ``_LOOK_AGAIN``: this
    process looks at it again.
    """
    verdicts = bytearray(len(names))
    read: list[_WorkerRead] = []
    descriptor = _open_folder(folder)
    if descriptor is None:
        return bytes(verdicts), read
    lstat = os.lstat
    kind_bits, folder_kind, file_kind = 0o170000, stat.S_IFDIR, stat.S_IFREG
    try:
        for position, name in enumerate(names):
            try:
                info = lstat(name, dir_fd=descriptor)
            except OSError:
                continue
            kind = info.st_mode & kind_bits
            if kind == file_kind:
                if unchanged(lookup.get(name), info) and info.st_size <= max_bytes:
                    verdicts[position] = _UNCHANGED
                    continue
                try:
                    opened, content = _read_content(name, max_bytes, descriptor)
                    blob = git.blob_id(content)
                    known = outcomes.get(blob)
                    if known is None:
                        outcome = (None if knows(blob) else
                                   _parse_content(content) if parse else content)
                        known = outcomes[blob] = (blob, outcome)
                    read.append((opened.st_size, opened.st_mtime_ns, opened.st_ctime_ns,
                                 opened.st_ino, len(content), *known))
                except Exception:  # whatever it is, this process looks at it again
                    continue
                verdicts[position] = _READ
            elif kind == folder_kind:
                verdicts[position] = _FOLDER
    finally:
        os.close(descriptor)
    return bytes(verdicts), read


def _collect(child: tuple[int, int] | None, given: Sequence[list[str] | None]
             ) -> list[tuple[list[str], bytes, list[_WorkerRead]] | None]:
    """A worker's ``(names, verdicts, read)`` per folder (None: not listed there; the
    names are ``given``'s when the worker was given them); None for each folder when the
    worker failed in any way (this process then does them: only time is lost)."""
    failed: list[tuple[list[str], bytes, list[_WorkerRead]] | None] = [None] * len(given)
    if child is None:
        return failed
    pid, reading = child
    chunks = []
    try:
        while chunk := os.read(reading, 1 << 16):
            chunks.append(chunk)
    except OSError:
        chunks = []
    finally:
        os.close(reading)
    try:
        _pid, status = os.waitpid(pid, 0)
    except ChildProcessError:
        status = 1
    if status != 0:
        return failed
    try:
        found: Any = marshal.loads(b"".join(chunks))
    except (ValueError, EOFError, TypeError):
        return failed
    if not isinstance(found, list) or len(found) != len(given):
        return failed
    collected: list[tuple[list[str], bytes, list[_WorkerRead]] | None] = []
    for item, names in zip(found, given, strict=True):
        if item is None:
            if names is not None:
                return failed
            collected.append(None)
            continue
        if not (isinstance(item, tuple) and len(item) == 3 and isinstance(item[1], bytes)
                and isinstance(item[2], list) and item[1].count(_READ) == len(item[2])):
            return failed
        listed = item[0] if names is None else names
        if not (isinstance(listed, list) and len(listed) == len(item[1])):
            return failed
        collected.append((listed, item[1], item[2]))
    return collected


def _read_content(path: str, max_bytes: int, folder: int | None = None
                  ) -> tuple[os.stat_result, bytes]:
    """The open file's stat and its bytes (``path`` relative to the folder descriptor
    ``folder`` if given); raises MigrationParseError (not a regular file, too large) or
    OSError."""
    # os-level calls, and a buffer of the file's size (not max_bytes): a cold run reads
    # every file of the fleet. O_NONBLOCK: a FIFO named x.py never blocks the open.
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


def _open_folder(folder: str) -> int | None:
    if os.stat not in os.supports_dir_fd:  # pragma: no cover - Windows
        return None
    try:
        return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None


def _rows(columns: FolderColumns | None) -> dict[str, FileEntry]:
    if columns is None:
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


Tables = tuple[dict[str, FolderColumns], dict[str, ContentRow], dict[str, str],
               dict[str, TreeColumns]]


def encode(tables: Tables) -> bytes:
    payload = marshal.dumps(tables)
    return MAGIC + SCHEMA_TAG + b"\n" + b"%08x\n" % zlib.crc32(payload) + payload


def decode(data: bytes) -> Tables | str:
    """The tables, or why they cannot be used (then the index is rebuilt)."""
    if not data.startswith(MAGIC):
        return "not an index file"
    header_end = data.find(b"\n", len(MAGIC))
    tag = data[len(MAGIC):header_end]
    if header_end < 0 or tag != SCHEMA_TAG:
        return f"index written by another version ({tag.decode(errors='replace')})"
    crc_end = header_end + 10
    payload = data[crc_end:]
    if data[header_end + 1:crc_end] != b"%08x\n" % zlib.crc32(payload):
        return "index damaged (checksum mismatch)"
    try:
        tables: Any = marshal.loads(payload)
    except (ValueError, EOFError, TypeError):
        return "index damaged (unreadable)"
    if not (isinstance(tables, tuple) and len(tables) == 4
            and all(isinstance(table, dict) for table in tables)):
        return "index damaged (unexpected layout)"
    checked: Tables = tables
    return checked


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[bool]:
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


# --------------------------------------------------------------------------------- location

_OPEN: dict[str, MigrationIndex] = {}

# Set to a non-empty value to run without the index (nothing read, nothing written).
DISABLE_VARIABLE = "ALEMBIC_AUTOCOPY_NO_INDEX"


def index_path(project: ProjectConfig) -> Path:
    """``<git common dir>/alembic-autocopy/index``, or a file in the user's cache folder."""
    common = _common_dir(project.here)
    if common is not None:
        return common / "alembic-autocopy" / "index"
    digest = hashlib.sha256(os.fsencode(project.here.resolve())).hexdigest()[:16]
    return user_cache_dir() / f"index-{digest}"


def _common_dir(here: Path) -> Path | None:
    return git.locate(here)[1]


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
