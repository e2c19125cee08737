"""Find every migration file: this worktree's, its sibling worktrees', configured folders'.

Each version location of this project is mapped to the same relative path inside every other
worktree (or configured folder), then read with the same loader rules as Alembic
(``*.py`` minus ``__init__.py`` and editor lock files, sub-folders only when
``recursive_version_locations`` is set). Files are parsed, never imported.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from alembic_autocopy.core import progress_report
from alembic_autocopy.core.errors import GitError, MigrationParseError
from alembic_autocopy.core.model import (
    COPY_DETAIL,
    Candidate,
    Location,
    LocationKind,
    MigrationHeader,
    SkippedFile,
)
from alembic_autocopy.core.names import refusal
from alembic_autocopy.effects import git
from alembic_autocopy.effects.project import ProjectConfig

TYPE_CHECKING = False  # typing's, without importing typing (see output.py)
if TYPE_CHECKING:
    from typing import Any

    from alembic_autocopy.sources.trust import TrustJudge

# Same as alembic.script.base._only_source_rev_file.
_REVISION_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")


@dataclass
class Source:
    """A folder tree to search and how to label what is found there."""

    kind: LocationKind
    root: Path  # worktree root (or configured folder)
    version_dirs: list[tuple[Path, Path]]  # (folder to read, our version location it maps to)
    branch: str | None = None
    commit: str | None = None
    repository: Path | None = None  # worktree to run git in for the committed check


@dataclass
class Inventory:
    """Everything found: this worktree's revisions, candidates elsewhere, what was skipped."""

    local: list[Candidate] = field(default_factory=list)
    elsewhere: list[Candidate] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)  # roots of the other sources read
    refs_searched: int | None = None  # git refs read (None: git objects were not searched)
    # what the persistent index saved (index.IndexStats), for ``-v``
    index_stats: Any = field(default=None, repr=False)
    # files refused by trust.py (others could have written them), with the reason
    untrusted: list[tuple[Candidate, str]] = field(default_factory=list)
    # False while only this worktree was read (``scan(here_only=True)``): repair.assess reads
    # the other sources only when the database or this worktree needs them, and sets it.
    complete: bool = True
    # Built for planning only (repair.Options.closest_only): copies elsewhere of revisions
    # this worktree has, and git copies of contents a file holds, were left out.
    closest_only: bool = False
    # The other sources, discovered on demand, still to read (``scan(into=...)``).
    pending: Callable[[list[str]], list[Source]] | None = field(default=None, repr=False)
    here: Source | None = field(default=None, repr=False)  # this worktree, once scanned
    # What was read, so a file reached by two paths counts once: real folder -> names of the
    # plain files read in it, and the real paths of files behind symlinks or in sub-folders.
    seen_folders: dict[str, set[str]] = field(default_factory=dict, repr=False)
    seen_files: set[str] = field(default_factory=set, repr=False)
    # This worktree's files the static reader refused, waiting for Alembic's loading
    # (``settle_unreadable_here``), and those it read: path -> why the static reader could not.
    unreadable_here: list[SkippedFile] = field(default_factory=list, repr=False)
    loaded_by_alembic: dict[str, str] = field(default_factory=dict, repr=False)
    # Places holding a revision that were only counted (``Options.places_per_revision``).
    more_places: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def all(self) -> list[Candidate]:
        return self.local + self.elsewhere

    def local_ids(self) -> set[str]:
        return {candidate.revision for candidate in self.local}


@dataclass(frozen=True)
class ReadFile:
    """A file read and parsed: the candidate's ingredients (cached by the index)."""

    header: MigrationHeader
    sha256: str
    size: int
    blob: str


FileReader = Callable[[str, int], "ReadFile"]


def read_migration_file(path: str | Path, max_bytes: int) -> ReadFile:
    """Read and parse one file; raise MigrationParseError or OSError."""
    # The parser is imported when a file must be read: a warm run answers from the index.
    from alembic_autocopy.core.parsing import parse_migration, sha256_hex

    with open(path, "rb", opener=open_nonblocking) as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise MigrationParseError("not a regular file")
        if info.st_size > max_bytes:
            raise MigrationParseError(f"larger than {max_bytes} bytes")
        content = handle.read(max_bytes + 1)
    header = parse_migration(content, max_bytes=max_bytes)
    return ReadFile(header, sha256_hex(content), len(content), git.blob_id(content))


def open_nonblocking(path: str, flags: int) -> int:
    """An ``opener`` that never waits: a FIFO named ``x.py`` (or a symlink to one) would
    otherwise block ``open`` until a writer comes. Regular files read as usual."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def this_worktree(project: ProjectConfig) -> Path | None:
    return git.locate(project.here)[0]


def relative_version_dirs(project: ProjectConfig, root: Path | None) -> list[Path | None]:
    """Each version location relative to ``root`` (None when it lies outside it)."""
    relatives: list[Path | None] = []
    for location in project.version_locations:
        if root is None:
            relatives.append(None)
            continue
        try:
            relatives.append(location.resolve().relative_to(root.resolve()))
        except ValueError:
            relatives.append(None)
    return relatives


def discover_sources(project: ProjectConfig, notes: list[str]) -> list[Source]:
    """This worktree first, then its sibling worktrees, then configured folders."""
    here, worktrees = here_source(project)
    return [here, *other_sources(project, here, worktrees, notes)]


def here_source(project: ProjectConfig) -> tuple[Source, list[git.WorktreeInfo]]:
    """This worktree as a source, and the list of every worktree of its repository."""
    here_root = this_worktree(project)
    worktrees = git.list_worktrees(here_root) if here_root else []
    here_info = next((w for w in worktrees if _same(w.path, here_root)), None)
    here = Source(
        kind=LocationKind.HERE, root=here_root or project.here,
        version_dirs=[(loc, loc) for loc in project.version_locations],
        branch=here_info.branch_name if here_info else None,
        commit=here_info.head if here_info else None,
        repository=here_root,
    )
    return here, worktrees


def other_sources(project: ProjectConfig, here: Source, worktrees: list[git.WorktreeInfo],
                  notes: list[str]) -> list[Source]:
    """The sibling worktrees of ``here``, then the configured folders."""
    here_root = here.repository
    relatives = relative_version_dirs(project, here_root)
    sources: list[Source] = []
    seen_roots: set[Path] = set()
    if here_root:
        seen_roots.add(here_root.resolve())
    for info in worktrees:
        if info.bare or _same(info.path, here_root):
            continue
        if info.prunable is not None or not info.path.is_dir():
            notes.append(f"worktree {info.path} no longer exists: skipped "
                         f"(run `git worktree prune` to forget it)")
            continue
        sources.append(_mapped_source(LocationKind.WORKTREE, info, project, relatives))
        seen_roots.add(info.path.resolve())
    for folder in project.search_folders():
        sources.extend(_folder_sources(folder, project, relatives, seen_roots, notes))
    return sources


def _same(a: Path | None, b: Path | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _mapped_source(kind: LocationKind, info: git.WorktreeInfo, project: ProjectConfig,
                   relatives: list[Path | None]) -> Source:
    pairs = zip(relatives, project.version_locations, strict=True)
    dirs = [(info.path / rel, ours) for rel, ours in pairs if rel is not None]
    return Source(kind=kind, root=info.path, version_dirs=dirs, branch=info.branch_name,
                  commit=info.head, repository=info.path)


def _folder_sources(folder: Path, project: ProjectConfig, relatives: list[Path | None],
                    seen_roots: set[Path], notes: list[str]) -> list[Source]:
    """A configured folder: a worktree of another clone (with its own worktrees) or a plain
    folder holding a project copy or migration files."""
    resolved = folder.resolve()
    if resolved in seen_roots:
        return []
    root = git.toplevel(folder)
    if root is None and git.is_bare_repository(folder):
        root = folder  # a bare clone: no files of its own, but its linked worktrees count
    if root is not None and root.resolve() == resolved:
        sources: list[Source] = []
        try:
            infos = git.list_worktrees(root)
        except GitError as error:
            notes.append(f"folder {folder}: {error.message}; skipped")
            return []
        for info in infos:
            if info.bare or info.path.resolve() in seen_roots:
                continue
            if info.prunable is not None or not info.path.is_dir():
                continue
            kind = LocationKind.CLONE
            sources.append(_mapped_source(kind, info, project, relatives))
            seen_roots.add(info.path.resolve())
        return sources
    seen_roots.add(resolved)
    pairs = zip(relatives, project.version_locations, strict=True)
    dirs = [(folder / rel, ours) for rel, ours in pairs
            if rel is not None and (folder / rel).is_dir()]
    if not dirs:
        # A folder of migration files itself: map it to our first version location.
        dirs = [(folder, project.version_locations[0])]
    return [Source(kind=LocationKind.FOLDER, root=folder, version_dirs=dirs)]


def iter_migration_paths(folder: Path, recursive: bool,
                         skipped: list[SkippedFile]) -> Iterator[Path]:
    """Files Alembic would load from ``folder`` (no symlinked folders followed)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return
    except OSError as error:
        skipped.append(SkippedFile(str(folder), f"cannot list folder: {error.strerror}"))
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if recursive and entry.name != "__pycache__":
                    yield from iter_migration_paths(Path(entry.path), recursive, skipped)
                continue
        except OSError:
            continue
        if _REVISION_FILE.match(entry.name):
            yield Path(entry.path)


# Threads only pay when stat/read waits dominate and cores are free: on 2 cores a warm scan
# of 20,000 files took 333 ms with 4 threads and 262 ms without (medians of 6; the Python
# work per file holds the GIL). So: a large fleet and at least PARALLEL_MIN_CORES cores.
PARALLEL_MIN_FILES = 4000
PARALLEL_MIN_CORES = 4
PARALLEL_WORKERS = 4

# ``{path from the worktree root: blob id}`` of every file under the given root-relative
# folders in a commit: git.tree_blobs, or the index's cached answer.
CommittedLister = Callable[[Path, str, tuple[str, ...]], dict[str, str]]

# What the reader returned or raised for each file of one folder, in the listing's order.
_FolderResult = list["ReadFile | MigrationParseError | OSError"]

# Reads the named files of one folder at once, errors returned in place (the index's
# read_folder: one stat per file relative to the folder, nothing else when unchanged).
FolderReader = Callable[[str, list[str], int],
                        list["ReadFile | MigrationParseError | OSError"]]
# The same for names straight from ``os.listdir`` (the index's read_listed): returns the
# files kept (no folders), those behind a symlink, and what was read for each.
ListingReader = Callable[[str, list[str], int],
                         tuple[list[str], set[str],
                               list["ReadFile | MigrationParseError | OSError"]]]
# ``ListingReader`` for many folders at once, listing them itself (the index's
# read_listings, which shares a large fleet's listing and stat checks with worker
# processes): (folders, max_bytes, names_of(folder), done(folder)) -> per folder what
# ListingReader returns. ``names_of`` gives None for a folder it could not list (and said so).
ListingsReader = Callable[
    [list[str], int, Callable[[str], "list[str] | None"], Callable[[str], None]],
    list[tuple[list[str], set[str], list["ReadFile | MigrationParseError | OSError"]]]]


def scan(project: ProjectConfig, reader: FileReader = read_migration_file,
         committed: CommittedLister = git.tree_blobs, folder_reader: FolderReader | None = None,
         wanted: Callable[[str], bool] | None = None,
         allow_untrusted: bool | None = None, *, here_only: bool = False,
         into: Inventory | None = None,
         listing_reader: ListingReader | None = None,
         listings_reader: ListingsReader | None = None) -> Inventory:
    """Read every source; never raises for a bad file (it is skipped with a reason).

    ``folder_reader``, when given, reads each folder instead of ``reader`` file by file;
    ``listing_reader`` reads flat folders from a bare name listing (no ``DirEntry`` per file),
    and ``listings_reader``, when given, all of them at once (in parallel processes).
    ``wanted(revision)`` keeps only the candidates it accepts (``find`` builds a dozen
    candidates, not twenty thousand). Folders are read concurrently when the fleet is large
    (stat and read release the GIL). ``allow_untrusted`` (default: the configuration) keeps
    files other users could have written (see trust.py).

    ``here_only``: read this worktree alone (the other sources are not even listed: no
    sibling's folder is touched); ``into``: such an inventory, whose other sources are then
    read into it (this worktree is not read again).
    """
    if allow_untrusted is None:
        allow_untrusted = project.tool.allow_untrusted_source
    if into is None:
        inventory = Inventory()
        here, worktrees = here_source(project)
        inventory.here = here
        others = functools.partial(other_sources, project, here, worktrees)
        if here_only:
            sources, inventory.pending, inventory.complete = [here], others, False
        else:
            sources = [here, *others(inventory.notes)]
    else:
        inventory = into
        sources = inventory.pending(inventory.notes) if inventory.pending else []
        inventory.pending = None
    inventory.searched += [os.fspath(s.root) for s in sources if s.kind is not LocationKind.HERE]
    judge = None
    if not allow_untrusted and any(s.kind is not LocationKind.HERE for s in sources):
        from alembic_autocopy.sources.trust import TrustJudge

        judge = TrustJudge()
    # Flat folders read through the index are listed by name only (the index's lstat tells
    # files, folders and symlinks apart); otherwise each entry is looked at while listing.
    by_name = ((listing_reader is not None or listings_reader is not None)
               and not project.recursive_version_locations)
    jobs: list[tuple[Source, str, list[str], list[tuple[str, bool]]]] = []
    for source in sources:
        for folder, _ours in source.version_dirs:
            text = os.fspath(folder)
            if by_name and listings_reader is not None:
                jobs.append((source, text, [], []))  # listed by listings_reader
            elif by_name:
                jobs.append((source, text, _names_in(text, inventory.skipped), []))
            else:
                jobs.append((source, text, [], _list_folder(
                    text, project.recursive_version_locations, inventory.skipped)))
    max_bytes = project.tool.max_file_bytes

    tick = progress_report.counter(len(jobs), "reading migration folders")

    def read_folder(job: tuple[Source, str, list[str], list[tuple[str, bool]]]
                    ) -> tuple[list[str], set[str], _FolderResult]:
        _source, folder, names, entries = job
        if listing_reader is not None and by_name:
            read = listing_reader(folder, names, max_bytes)
        else:
            read = ([name for name, _ in entries], {name for name, link in entries if link},
                    _read_folder(folder, entries, reader, max_bytes, folder_reader))
        tick(folder)
        return read

    total = sum(len(names) + len(entries) for _, _, names, entries in jobs)
    if by_name and listings_reader is not None:
        def names_of(folder: str) -> list[str] | None:
            reported = len(inventory.skipped)
            names = _names_in(folder, inventory.skipped)
            return None if len(inventory.skipped) != reported else names

        results = listings_reader([folder for _, folder, _, _ in jobs], max_bytes, names_of,
                                  tick)
    elif (total >= PARALLEL_MIN_FILES and len(jobs) > 1
            and (os.cpu_count() or 1) >= PARALLEL_MIN_CORES):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=PARALLEL_WORKERS) as pool:
            results = list(pool.map(read_folder, jobs))
    else:
        results = [read_folder(job) for job in jobs]
    listings: dict[int, dict[str, str] | None] = {}
    for (source, folder_text, _names, _entries), (kept, linked, result) in zip(
            jobs, results, strict=True):
        def listing(source: Source = source) -> dict[str, str] | None:
            if id(source) not in listings:  # only for sources where something is kept
                listings[id(source)] = _committed_blobs(source, committed)
            return listings[id(source)]

        found = _candidates(source, folder_text, kept, linked, result, inventory, listing,
                            wanted, judge if source.kind is not LocationKind.HERE else None,
                            inventory.seen_folders, inventory.seen_files)
        if source.kind is LocationKind.HERE:
            inventory.local.extend(found)
        else:
            inventory.elsewhere.extend(found)
    settle_unreadable_here(project, inventory, wanted)
    return inventory


def settle_unreadable_here(project: ProjectConfig, inventory: Inventory,
                           wanted: Callable[[str], bool] | None = None) -> None:
    """Read this worktree's files the static reader refused the way Alembic does.

    Alembic imports them at every run (``loading``), so their header is what it reads; when
    that fails here too (a module the tool's environment lacks), the literal values the file
    holds still name its id (``parsing.read_partly``), so the file is never taken as missing.
    Only what neither can read is skipped, with both reasons.
    """
    pending, inventory.unreadable_here = inventory.unreadable_here, []
    # Only a regular file of a sane size is worth a second look: opening a FIFO (or a
    # device) would block this process forever, and a huge or binary file is no migration.
    loadable = [item for item in pending if _plain_file(item.path, project.tool.max_file_bytes)]
    inventory.skipped.extend(item for item in pending if item not in loadable)
    pending = loadable
    if not pending:
        return
    from alembic_autocopy.core.parsing import read_partly, sha256_hex
    from alembic_autocopy.effects import git
    from alembic_autocopy.sources import loading

    loaded = loading.load_headers(project, [item.path for item in pending])
    for item in pending:
        facts = loading.file_facts(item.path)
        if facts is None:
            continue
        content, size = facts
        header = loaded.get(item.path)
        if isinstance(header, MigrationHeader):
            inventory.loaded_by_alembic[item.path] = item.reason
        else:
            try:
                header, undecided = read_partly(content, max_bytes=project.tool.max_file_bytes)
            except MigrationParseError:
                inventory.skipped.append(SkippedFile(item.path, f"{item.reason}; {header}"))
                continue
            inventory.loaded_by_alembic[item.path] = item.reason
            if undecided:
                inventory.skipped.append(SkippedFile(
                    item.path, f"read as revision {header.revision} without its "
                               f"{' and '.join(undecided)} ({item.reason}; {header})"))
        if wanted is not None and not wanted(header.revision):
            continue
        name = item.path.rpartition(os.sep)[2]
        root = inventory.here.root if inventory.here is not None else project.here
        relative = name
        for location in project.version_locations:
            prefix = os.fspath(location) + os.sep
            if item.path.startswith(prefix):
                relative = item.path[len(prefix):]
        inventory.local.append(Candidate(
            header=header, sha256=sha256_hex(content), size=size, filename=name,
            relative_path=relative,
            location=Location(kind=LocationKind.HERE, path=item.path, worktree=os.fspath(root),
                              branch=inventory.here.branch if inventory.here else None,
                              commit=inventory.here.commit if inventory.here else None,
                              blob=git.blob_id(content)),
        ))


def _plain_file(path: str, max_bytes: int) -> bool:
    """A regular file (symlinks followed, as Alembic's import does) of at most ``max_bytes``."""
    try:
        facts = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(facts.st_mode) and facts.st_size <= max_bytes


def refresh_here(project: ProjectConfig, inventory: Inventory, root: Path | None,
                 reader: FileReader = read_migration_file) -> bool:
    """Bring ``inventory.local`` up to date with this worktree's version folders.

    Called once the locks are held: another run in this worktree may have placed copies (or
    ``clean`` removed them) since the scan. Only names not seen by the scan are read (runs
    of this tool add or remove files, never rewrite them). ``root``: this worktree (None
    outside git). Returns True if anything changed.
    """
    known = {candidate.location.path: candidate for candidate in inventory.local}
    skipped = {item.path for item in inventory.skipped}
    source = Source(kind=LocationKind.HERE, root=root or project.here, version_dirs=[])
    fresh: list[Candidate] = []
    changed = False
    for location in project.version_locations:
        folder = os.fspath(location)
        new: list[tuple[str, bool]] = []
        for name, link in _migration_files(folder, project.recursive_version_locations, []):
            path = folder + os.sep + name
            if path in known:
                fresh.append(known.pop(path))
            elif path not in skipped:
                new.append((name, link))
        if new:
            changed = True
            result = _read_folder(folder, new, reader, project.tool.max_file_bytes, None)
            fresh += _candidates(source, folder, [name for name, _ in new],
                                 {name for name, link in new if link}, result, inventory,
                                 lambda: None, None, None, {}, set())
    if known or changed:
        inventory.local = fresh
        settle_unreadable_here(project, inventory)
        return True
    return False


def _names_in(folder: str, skipped: list[SkippedFile]) -> list[str]:
    """The names in ``folder`` that Alembic's file rule accepts, sorted (folders and
    symlinks among them are told apart when they are stat-ed)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    except OSError as error:
        skipped.append(SkippedFile(folder, f"cannot list folder: {error.strerror}"))
        return []
    return sorted(filter(_REVISION_FILE.match, names))


def _list_folder(folder: str, recursive: bool,
                 skipped: list[SkippedFile]) -> list[tuple[str, bool]]:
    """``list(_migration_files(...))``; for a flat folder (the usual case) in one loop over
    the listing, without a generator or a sort key: a fleet holds tens of thousands."""
    if recursive:
        return list(_migration_files(folder, recursive, skipped))
    found: list[tuple[str, bool]] = []
    match = _REVISION_FILE.match
    try:
        with os.scandir(folder) as iterator:
            for entry in iterator:
                if not match(entry.name):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        continue
                except OSError:
                    continue
                found.append((entry.name, entry.is_symlink()))
    except FileNotFoundError:
        return []
    except OSError as error:
        skipped.append(SkippedFile(folder, f"cannot list folder: {error.strerror}"))
        return []
    found.sort()  # names are unique: the same order as sorting by name
    return found


def _migration_files(folder: str, recursive: bool,
                     skipped: list[SkippedFile]) -> Iterator[tuple[str, bool]]:
    """(path relative to ``folder``, is it a symlink) of each file Alembic would load from
    it; the symlink flag comes free with the folder listing (no extra stat)."""
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
                    for inner, link in _migration_files(entry.path, recursive, skipped):
                        yield os.path.join(entry.name, inner), True if link else os.sep in inner
                continue
        except OSError:
            continue
        if _REVISION_FILE.match(entry.name):
            yield entry.name, entry.is_symlink()


def _read_folder(folder: str, names: list[tuple[str, bool]], reader: FileReader,
                 max_bytes: int, folder_reader: FolderReader | None) -> _FolderResult:
    if folder_reader is not None:
        return folder_reader(folder, [name for name, _ in names], max_bytes)
    prefix = folder + os.sep
    results: _FolderResult = []
    for name, _resolve in names:
        try:
            results.append(reader(prefix + name, max_bytes))
        except (MigrationParseError, OSError) as error:
            results.append(error)
    return results


def _candidates(source: Source, folder: str, names: list[str], linked: set[str],
                result: _FolderResult, inventory: Inventory,
                listing: Callable[[], dict[str, str] | None],
                wanted: Callable[[str], bool] | None, judge: TrustJudge | None = None,
                seen_folders: dict[str, set[str]] | None = None,
                seen_files: set[str] | None = None) -> list[Candidate]:
    """The candidates of one folder's files (``names``, relative to ``folder``; ``linked``:
    those behind a symlink or in a sub-folder). ``seen_folders``/``seen_files`` (see
    Inventory) skip a file already read through another path, and record this folder's."""
    found: list[Candidate] = []
    committed: dict[str, str] | None = None
    copies: set[str] = set()
    root = os.fspath(source.root)
    prefix = folder + os.sep
    kind, branch, commit = source.kind, source.branch, source.commit
    verdicts: dict[str, str | None] = {}
    # A plain file's real path is its real folder's plus its name: no system call per file.
    real_folder = os.path.realpath(folder)
    real_prefix = real_folder + os.sep
    seen_here: set[str] = set()
    if seen_folders is not None:
        seen_here = seen_folders.setdefault(real_folder, set())
    # The usual case: a folder not met before, no symlink anywhere: nothing to look up.
    one_by_one = bool(seen_here or seen_files or linked)
    if seen_folders is not None and not one_by_one:
        seen_here.update(names)
    for name, facts in zip(names, result, strict=True):
        real = ""  # computed only if needed
        if one_by_one and name in linked:  # behind a symlink, in a sub-folder: resolved
            real = os.path.realpath(prefix + name)
            if seen_files is not None:
                head, _, tail = real.rpartition(os.sep)
                if real in seen_files or (seen_folders is not None
                                          and tail in seen_folders.get(head, ())):
                    continue
                seen_files.add(real)
        elif one_by_one:
            if name in seen_here or (seen_files and real_prefix + name in seen_files):
                continue
            seen_here.add(name)
        if wanted is not None and isinstance(facts, ReadFile) and not wanted(
                facts.header.revision):
            continue
        path = prefix + name
        if isinstance(facts, MigrationParseError):
            if kind is LocationKind.HERE:  # Alembic's own loading may read it
                inventory.unreadable_here.append(SkippedFile(path, str(facts)))
            else:
                inventory.skipped.append(SkippedFile(path, str(facts)))
            continue
        if isinstance(facts, OSError):
            inventory.skipped.append(SkippedFile(path, facts.strerror or str(facts)))
            continue
        if kind is not LocationKind.HERE:  # a name that would become a file here
            problem = refusal(name.replace(os.sep, "/"), recursive=True)
            if problem is not None:
                inventory.skipped.append(SkippedFile(path, f"unsafe name refused ({problem})"))
                continue
        untrusted = None
        if judge is not None:
            if not real:
                real = (os.path.realpath(prefix + name) if name in linked
                        else real_prefix + name)
            # Every file directly in one real folder gets the same verdict: judge it once.
            judged_folder = real[:real.rfind(os.sep)]
            if judged_folder in verdicts:
                untrusted = verdicts[judged_folder]
            else:
                untrusted = verdicts[judged_folder] = judge.tree_reason(real, root)
        if not found and untrusted is None:
            committed = listing()
            copies = _copies_in(folder)
        is_committed = None
        if committed is not None:
            is_committed = committed.get(_root_relative(path, root)) == facts.blob
        candidate = Candidate(
            header=facts.header, sha256=facts.sha256, size=facts.size,
            filename=path[path.rfind(os.sep) + 1:], relative_path=name,
            location=Location(kind=kind, path=path, worktree=root, branch=branch,
                              commit=commit, blob=facts.blob, committed=is_committed,
                              detail=COPY_DETAIL if name in copies else None),
        )
        if untrusted is not None:
            inventory.untrusted.append((candidate, untrusted))
            inventory.skipped.append(SkippedFile(path, f"not trusted: {untrusted}"))
            continue
        found.append(candidate)
    return found


def _copies_in(folder: str) -> set[str]:
    """The names this tool copied into ``folder`` (its managed .gitignore lists them)."""
    ignore = os.path.join(folder, ".gitignore")
    if not os.path.isfile(ignore):
        return set()
    from alembic_autocopy.effects.placement import ignored_names

    try:
        return set(ignored_names(Path(ignore)))
    except (OSError, UnicodeDecodeError):
        return set()


def _root_relative(path: str, root: str) -> str:
    """``path`` relative to the worktree root, with git's ``/`` separators."""
    if path.startswith(root + os.sep):
        relative = path[len(root) + 1:]
    else:
        relative = os.path.relpath(path, root)
    return relative.replace(os.sep, "/") if os.sep != "/" else relative


def _committed_blobs(source: Source, committed: CommittedLister) -> dict[str, str] | None:
    """Blob ids of the files under this source's version folders in its HEAD commit (None
    when that cannot be known: not a git worktree, no commit yet, git failed)."""
    if source.repository is None or source.commit is None:
        return None
    root = os.fspath(source.root)
    folders = sorted({_root_relative(os.fspath(folder), root)
                      for folder, _ in source.version_dirs})
    inside = tuple(f for f in folders if f != ".." and not f.startswith("../"))
    try:
        return committed(source.repository, source.commit, inside) if inside else {}
    except GitError:
        return None
