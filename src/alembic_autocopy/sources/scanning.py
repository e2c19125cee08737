"""Find every migration file: this worktree's, its sibling worktrees', configured folders'.

Each version location of this project is mapped to the same relative path inside every other
worktree (or configured folder), then read with the same loader rules as Alembic
(``*.py`` minus ``__init__.py`` and editor lock files, sub-folders only when
``recursive_version_locations`` is set). Files are parsed, never imported.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from alembic_autocopy.sources.folders import (
    FileResult,
    FolderRead,
    ReadFile,
    migration_names,
    read_migration_file,
)
from alembic_autocopy.sources.index import MigrationIndex
from alembic_autocopy.sources.trust import TrustJudge

if TYPE_CHECKING:
    from alembic_autocopy.sources.trust import TrustJudge

# Imported inside functions, as each saves >= 5 ms where skipped: the parser, Alembic's loading and
# placement only where a file needs them.


class Source:
    """A folder tree to search and how to label what is found there."""

    def __init__(self, kind: LocationKind, root: Path, version_dirs: list[tuple[Path, Path]],
                 branch: str | None = None, commit: str | None = None,
                 repository: Path | None = None) -> None:
        self.kind = kind
        self.root = root  # worktree root (or configured folder)
        # (folder to read, our version location it maps to)
        self.version_dirs = version_dirs
        self.branch = branch
        self.commit = commit
        self.repository = repository  # worktree to run git in for the committed check


class Inventory:
    """Everything found: this worktree's revisions, candidates elsewhere, what was skipped."""

    def __init__(self, local: list[Candidate] | None = None,
                 elsewhere: list[Candidate] | None = None) -> None:
        self.local: list[Candidate] = [] if local is None else local
        self.elsewhere: list[Candidate] = [] if elsewhere is None else elsewhere
        self.skipped: list[SkippedFile] = []
        self.notes: list[str] = []
        self.searched: list[str] = []  # roots of the other sources read
        # git refs read (None: git objects were not searched)
        self.refs_searched: int | None = None
        # what the persistent index saved (index.IndexStats), for ``-v``
        self.index_stats: Any = None
        # files refused by trust.py (others could have written them), with the reason
        self.untrusted: list[tuple[Candidate, str]] = []
        # False while only this worktree was read (``scan(here_only=True)``): repair.assess
        # reads the other sources only when the database or this worktree needs them, and
        # sets it.
        self.complete = True
        # Built for planning only (repair.Options.closest_only): copies elsewhere of
        # revisions this worktree has, and git copies of contents a file holds, were left out.
        self.closest_only = False
        # The other sources, discovered on demand, still to read (``scan(into=...)``).
        self.pending: Callable[[list[str]], list[Source]] | None = None
        self.here: Source | None = None  # this worktree, once scanned
        # What was read, so a file reached by two paths counts once: real folder -> names of
        # the plain files read in it, and the real paths of files behind symlinks or in
        # sub-folders.
        self.seen_folders: dict[str, set[str]] = {}
        self.seen_files: set[str] = set()
        # This worktree's files the static reader refused, waiting for Alembic's loading
        # (``settle_unreadable_here``), and those it read: path -> why the static reader
        # could not.
        self.unreadable_here: list[SkippedFile] = []
        self.loaded_by_alembic: dict[str, str] = {}
        # Places holding a revision that were only counted (``Options.places_per_revision``).
        self.more_places: dict[str, int] = {}

    @property
    def all(self) -> list[Candidate]:
        return self.local + self.elsewhere

    def local_ids(self) -> set[str]:
        return {candidate.revision for candidate in self.local}


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
        return _clone_sources(folder, root, project, relatives, seen_roots, notes)
    seen_roots.add(resolved)
    pairs = zip(relatives, project.version_locations, strict=True)
    dirs = [(folder / rel, ours) for rel, ours in pairs
            if rel is not None and (folder / rel).is_dir()]
    if not dirs:
        # A folder of migration files itself: map it to our first version location.
        dirs = [(folder, project.version_locations[0])]
    return [Source(kind=LocationKind.FOLDER, root=folder, version_dirs=dirs)]


def _clone_sources(folder: Path, root: Path, project: ProjectConfig,
                   relatives: list[Path | None], seen_roots: set[Path],
                   notes: list[str]) -> list[Source]:
    """The worktrees of another clone that ``folder`` is the root of."""
    try:
        infos = git.list_worktrees(root)
    except GitError as error:
        notes.append(f"folder {folder}: {error.message}; skipped")
        return []
    sources: list[Source] = []
    for info in infos:
        if info.bare or info.path.resolve() in seen_roots:
            continue
        if info.prunable is not None or not info.path.is_dir():
            continue
        sources.append(_mapped_source(LocationKind.CLONE, info, project, relatives))
        seen_roots.add(info.path.resolve())
    return sources


# ``{path from the worktree root: blob id}`` of every file under the given root-relative
# folders in a commit: git.tree_blobs, or the index's cached answer.
CommittedLister = Callable[[Path, str, tuple[str, ...]], dict[str, str]]


def scan(project: ProjectConfig, index: MigrationIndex | None = None, *,
         wanted: Callable[[str], bool] | None = None, allow_untrusted: bool | None = None,
         here_only: bool = False, into: Inventory | None = None) -> Inventory:
    """Read every source through ``index`` (default: one kept in memory only); never raises
    for a bad file (it is skipped with a reason).

    ``wanted(revision)`` keeps only the candidates it accepts (``find`` builds a dozen
    candidates, not twenty thousand). ``allow_untrusted`` (default: the configuration) keeps
    files other users could have written (see trust.py).

    ``here_only``: read this worktree alone (the other sources are not even listed: no
    sibling's folder is touched); ``into``: such an inventory, whose other sources are then
    read into it (this worktree is not read again).
    """
    if index is None:
        index = MigrationIndex(None)
    inventory, sources = _sources_to_read(project, here_only, into)
    if allow_untrusted is None:
        allow_untrusted = project.tool.allow_untrusted_source
    judge = _trust_judge(sources) if not allow_untrusted else None
    folders = [(source, os.fspath(folder)) for source in sources
               for folder, _ours in source.version_dirs]
    tick = progress_report.counter(len(folders), "reading migration folders")
    listings = _CommittedListings(index.committed_blobs)
    for source, folder in folders:
        read = index.read_folder(folder, project.tool.max_file_bytes,
                                 project.recursive_version_locations)
        tick(folder)
        inventory.skipped += read.skipped
        here = source.kind is LocationKind.HERE
        found = _candidates(_Folder(source, folder, None if here else judge), read, inventory,
                            functools.partial(listings.of, source), wanted)
        (inventory.local if here else inventory.elsewhere).extend(found)
    settle_unreadable_here(project, inventory, wanted)
    return inventory


def _sources_to_read(project: ProjectConfig, here_only: bool,
                     into: Inventory | None) -> tuple[Inventory, list[Source]]:
    """The inventory to fill and the sources to read into it (see ``scan``)."""
    if into is not None:
        sources = into.pending(into.notes) if into.pending else []
        into.pending = None
    else:
        into = Inventory()
        here, worktrees = here_source(project)
        into.here = here
        others = functools.partial(other_sources, project, here, worktrees)
        if here_only:
            sources, into.pending, into.complete = [here], others, False
        else:
            sources = [here, *others(into.notes)]
    into.searched += [os.fspath(s.root) for s in sources if s.kind is not LocationKind.HERE]
    return into, sources


def _trust_judge(sources: list[Source]) -> TrustJudge | None:
    """A judge of other places' files, when some are read (this worktree's are the user's)."""
    if not any(s.kind is not LocationKind.HERE for s in sources):
        return None

    return TrustJudge()


class _CommittedListings:
    """Each source's committed blobs, asked of git (or the index) only for sources where
    something is kept."""

    def __init__(self, committed: CommittedLister) -> None:
        self._committed = committed
        self._known: dict[int, dict[str, str] | None] = {}

    def of(self, source: Source) -> dict[str, str] | None:
        if id(source) not in self._known:
            self._known[id(source)] = _committed_blobs(source, self._committed)
        return self._known[id(source)]


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
    if not loadable:
        return
    from alembic_autocopy.sources import loading

    loaded = loading.load_headers(project, [item.path for item in loadable])
    for item in loadable:
        facts = loading.file_facts(item.path)
        if facts is None:
            continue
        header = _settled_header(project, inventory, item, loaded.get(item.path), facts[0])
        if header is None or (wanted is not None and not wanted(header.revision)):
            continue
        inventory.local.append(_loaded_candidate(project, inventory, item.path, header, *facts))


def _settled_header(project: ProjectConfig, inventory: Inventory, item: SkippedFile,
                    loaded: object, content: bytes) -> MigrationHeader | None:
    """The header Alembic's loading gave, else what the literal values say (None: neither:
    the file is skipped with both reasons)."""
    from alembic_autocopy.core.parsing import read_partly

    if isinstance(loaded, MigrationHeader):
        inventory.loaded_by_alembic[item.path] = item.reason
        return loaded
    try:
        header, undecided = read_partly(content, max_bytes=project.tool.max_file_bytes)
    except MigrationParseError:
        inventory.skipped.append(SkippedFile(item.path, f"{item.reason}; {loaded}"))
        return None
    inventory.loaded_by_alembic[item.path] = item.reason
    if undecided:
        inventory.skipped.append(SkippedFile(
            item.path, f"read as revision {header.revision} without its "
                       f"{' and '.join(undecided)} ({item.reason}; {loaded})"))
    return header


def _loaded_candidate(project: ProjectConfig, inventory: Inventory, path: str,
                      header: MigrationHeader, content: bytes, size: int) -> Candidate:
    from alembic_autocopy.core.parsing import blob_id, sha256_hex

    name = path.rpartition(os.sep)[2]
    here = inventory.here
    relative = name
    for location in project.version_locations:
        prefix = os.fspath(location) + os.sep
        if path.startswith(prefix):
            relative = path[len(prefix):]
    return Candidate(
        header=header, sha256=sha256_hex(content), size=size, filename=name,
        relative_path=relative,
        location=Location(kind=LocationKind.HERE, path=path,
                          worktree=os.fspath(here.root if here is not None else project.here),
                          branch=here.branch if here else None,
                          commit=here.commit if here else None, blob=blob_id(content)),
    )


def _plain_file(path: str, max_bytes: int) -> bool:
    """A regular file (symlinks followed, as Alembic's import does) of at most ``max_bytes``."""
    try:
        facts = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(facts.st_mode) and facts.st_size <= max_bytes


def refresh_here(project: ProjectConfig, inventory: Inventory, root: Path | None) -> bool:
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
        new = FolderRead()
        for name, link in migration_names(folder, project.recursive_version_locations, []):
            path = folder + os.sep + name
            if path in known:
                fresh.append(known.pop(path))
            elif path not in skipped:
                new.names.append(name)
                new.linked.update([name] if link else [])
                new.results.append(_read_one(path, project.tool.max_file_bytes))
        if new.names:
            changed = True
            fresh += _candidates(_Folder(source, folder, None), new, inventory, lambda: None,
                                 None, track=False)
    if known or changed:
        inventory.local = fresh
        settle_unreadable_here(project, inventory)
        return True
    return False


def _read_one(path: str, max_bytes: int) -> FileResult:
    try:
        return read_migration_file(path, max_bytes)
    except (MigrationParseError, OSError) as error:
        return error


class _Folder:
    """One folder being turned into candidates: where it is, and what was met in it."""

    def __init__(self, source: Source, folder: str, judge: TrustJudge | None) -> None:
        self.source = source
        self.folder = folder
        self.prefix = folder + os.sep
        self.root = os.fspath(source.root)
        self.judge = judge
        # A plain file's real path is its real folder's plus its name: no call per file.
        self.real_prefix = os.path.realpath(folder) + os.sep
        self.verdicts: dict[str, str | None] = {}  # trust, by real folder
        self.committed: dict[str, str] | None = None
        self.copies: set[str] = set()
        self.listed = False  # committed and copies looked up (once something is kept)

    def real_path(self, name: str, linked: set[str]) -> str:
        return (os.path.realpath(self.prefix + name) if name in linked
                else self.real_prefix + name)

    def untrusted(self, real: str) -> str | None:
        """Why a file may not be trusted (every file of one real folder: judged once)."""
        if self.judge is None:
            return None
        judged_folder = real[:real.rfind(os.sep)]
        if judged_folder not in self.verdicts:
            self.verdicts[judged_folder] = self.judge.tree_reason(real, self.root)
        return self.verdicts[judged_folder]


def _candidates(place: _Folder, read: FolderRead, inventory: Inventory,
                listing: Callable[[], dict[str, str] | None],
                wanted: Callable[[str], bool] | None, *, track: bool = True) -> list[Candidate]:
    """The candidates of one folder's files. ``track``: skip a file already read through
    another path (``Inventory.seen_folders``/``seen_files``), and record this folder's."""
    found: list[Candidate] = []
    fresh = _unseen(place, read, inventory) if track else None
    for name, facts in zip(read.names, read.results, strict=True):
        if fresh is not None and name not in fresh:
            continue
        if wanted is not None and isinstance(facts, ReadFile) and not wanted(
                facts.header.revision):
            continue
        if not isinstance(facts, ReadFile) or _refused_name(place, name):
            _skip(place, name, facts, inventory)
            continue
        real = place.real_path(name, read.linked) if place.judge is not None else ""
        untrusted = place.untrusted(real) if real else None
        if not place.listed and untrusted is None:
            place.committed, place.copies, place.listed = listing(), _copies_in(place.folder), True
        candidate = _candidate(place, name, facts)
        if untrusted is not None:
            inventory.untrusted.append((candidate, untrusted))
            inventory.skipped.append(SkippedFile(place.prefix + name, f"not trusted: {untrusted}"))
            continue
        found.append(candidate)
    return found


def _unseen(place: _Folder, read: FolderRead, inventory: Inventory) -> set[str] | None:
    """The names of ``read`` not already read through another path (None: all of them),
    recorded as read."""
    seen_here = inventory.seen_folders.setdefault(place.real_prefix[:-1], set())
    if not (seen_here or inventory.seen_files or read.linked):
        # The usual case: a folder not met before, no symlink anywhere: nothing to look up.
        seen_here.update(read.names)
        return None
    fresh: set[str] = set()
    for name in read.names:
        if name in read.linked:  # behind a symlink, in a sub-folder: resolved
            real = os.path.realpath(place.prefix + name)
            head, _, tail = real.rpartition(os.sep)
            if real in inventory.seen_files or tail in inventory.seen_folders.get(head, ()):
                continue
            inventory.seen_files.add(real)
        else:
            if name in seen_here or place.real_prefix + name in inventory.seen_files:
                continue
            seen_here.add(name)
        fresh.add(name)
    return fresh


def _refused_name(place: _Folder, name: str) -> bool:
    """A name from elsewhere that would not be safe as a file here."""
    if place.source.kind is LocationKind.HERE:
        return False
    return refusal(name.replace(os.sep, "/"), recursive=True) is not None


def _skip(place: _Folder, name: str, facts: FileResult, inventory: Inventory) -> None:
    """Say why a file gives no candidate."""
    path = place.prefix + name
    if isinstance(facts, MigrationParseError):
        if place.source.kind is LocationKind.HERE:  # Alembic's own loading may read it
            inventory.unreadable_here.append(SkippedFile(path, str(facts)))
        else:
            inventory.skipped.append(SkippedFile(path, str(facts)))
    elif isinstance(facts, OSError):
        inventory.skipped.append(SkippedFile(path, facts.strerror or str(facts)))
    else:
        problem = refusal(name.replace(os.sep, "/"), recursive=True)
        inventory.skipped.append(SkippedFile(path, f"unsafe name refused ({problem})"))


def _candidate(place: _Folder, name: str, facts: ReadFile) -> Candidate:
    source, path = place.source, place.prefix + name
    is_committed = None
    if place.committed is not None:
        is_committed = place.committed.get(_root_relative(path, place.root)) == facts.blob
    return Candidate(
        header=facts.header, sha256=facts.sha256, size=facts.size,
        filename=path[path.rfind(os.sep) + 1:], relative_path=name,
        location=Location(kind=source.kind, path=path, worktree=place.root,
                          branch=source.branch, commit=source.commit, blob=facts.blob,
                          committed=is_committed,
                          detail=COPY_DETAIL if name in place.copies else None),
    )


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
