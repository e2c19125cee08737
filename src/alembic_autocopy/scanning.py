"""Find every migration file: this worktree's, its sibling worktrees', configured folders'.

Each version location of this project is mapped to the same relative path inside every other
worktree (or configured folder), then read with the same loader rules as Alembic
(``*.py`` minus ``__init__.py`` and editor lock files, sub-folders only when
``recursive_version_locations`` is set). Files are parsed, never imported.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from alembic_autocopy import git
from alembic_autocopy.errors import GitError, MigrationParseError
from alembic_autocopy.model import (
    Candidate,
    Location,
    LocationKind,
    MigrationHeader,
    SkippedFile,
)
from alembic_autocopy.parsing import parse_migration, sha256_hex
from alembic_autocopy.project import ProjectConfig

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


FileReader = Callable[[Path, int], "ReadFile"]


def read_migration_file(path: Path, max_bytes: int) -> ReadFile:
    """Read and parse one file; raise MigrationParseError or OSError."""
    with open(path, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise MigrationParseError("not a regular file")
        if info.st_size > max_bytes:
            raise MigrationParseError(f"larger than {max_bytes} bytes")
        content = handle.read(max_bytes + 1)
    header = parse_migration(content, max_bytes=max_bytes)
    return ReadFile(header, sha256_hex(content), len(content), git.blob_id(content))


def this_worktree(project: ProjectConfig) -> Path | None:
    return git.toplevel(project.here)


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
    here_root = this_worktree(project)
    relatives = relative_version_dirs(project, here_root)
    sources: list[Source] = []
    seen_roots: set[Path] = set()
    worktrees = git.list_worktrees(here_root) if here_root else []
    here_info = next((w for w in worktrees if _same(w.path, here_root)), None)
    sources.append(Source(
        kind=LocationKind.HERE, root=here_root or project.here,
        version_dirs=[(loc, loc) for loc in project.version_locations],
        branch=here_info.branch_name if here_info else None,
        commit=here_info.head if here_info else None,
        repository=here_root,
    ))
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


def scan(project: ProjectConfig, reader: FileReader = read_migration_file) -> Inventory:
    """Read every source; never raises for a bad file (it is skipped with a reason)."""
    inventory = Inventory()
    sources = discover_sources(project, inventory.notes)
    seen_files: set[Path] = set()
    for source in sources:
        found = _scan_source(source, project, reader, inventory, seen_files)
        found = _mark_committed(source, found)
        if source.kind is LocationKind.HERE:
            inventory.local.extend(found)
        else:
            inventory.elsewhere.extend(found)
    return inventory


def _scan_source(source: Source, project: ProjectConfig, reader: FileReader,
                 inventory: Inventory, seen_files: set[Path]) -> list[Candidate]:
    found: list[Candidate] = []
    for folder, _ours in source.version_dirs:
        for path in iter_migration_paths(folder, project.recursive_version_locations,
                                         inventory.skipped):
            real = Path(os.path.realpath(path))
            if real in seen_files:
                continue
            seen_files.add(real)
            try:
                facts = reader(path, project.tool.max_file_bytes)
            except MigrationParseError as error:
                inventory.skipped.append(SkippedFile(str(path), str(error)))
                continue
            except OSError as error:
                inventory.skipped.append(SkippedFile(str(path), error.strerror or str(error)))
                continue
            found.append(Candidate(
                header=facts.header, sha256=facts.sha256, size=facts.size, filename=path.name,
                relative_path=os.path.relpath(path, folder),
                location=Location(
                    kind=source.kind, path=str(path), worktree=str(source.root),
                    branch=source.branch, commit=source.commit, blob=facts.blob,
                ),
            ))
    return found


def _mark_committed(source: Source, found: list[Candidate]) -> list[Candidate]:
    """Set ``committed`` on each file: is this exact content in the worktree's HEAD commit?"""
    if source.repository is None or source.commit is None or not found:
        return found
    root = source.root
    specs: dict[str, Candidate] = {}
    for candidate in found:
        assert candidate.location.path is not None
        relative = os.path.relpath(candidate.location.path, root)
        specs[f"{source.commit}:{relative}"] = candidate
    try:
        blobs = git.batch_check(source.repository, specs)
    except GitError:
        return found
    marked: list[Candidate] = []
    for spec, candidate in specs.items():
        committed = blobs.get(spec) == candidate.location.blob
        marked.append(replace(candidate, location=replace(candidate.location,
                                                          committed=committed)))
    return marked
