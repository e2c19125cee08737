"""Put brought-in migrations where Alembic sees them and git does not.

Each copy goes into this worktree's version folder, written atomically (temporary file in
the same folder, then a hard link that fails rather than overwrite). The copies, and the
ignore file itself, are listed in an untracked ``.gitignore`` in that folder: ``git status``
stays clean, ``git add -A`` cannot pick them up, a later merge that brings the same files
overwrites them silently, and no other worktree is affected (``.git/info/exclude`` is shared
by every worktree, so it is never used). A manifest in this worktree's own git folder records
every copy; it is written before the copies, so a crash leaves nothing it cannot account for.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import importlib.util
import json
import marshal
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import CodeType
from typing import NamedTuple

from alembic_autocopy.core.errors import GitError, MigrationParseError, PlacementError
from alembic_autocopy.core.model import Candidate, ManifestEntry
from alembic_autocopy.core.names import refusal
from alembic_autocopy.core.parsing import parse_migration
from alembic_autocopy.effects import git
from alembic_autocopy.effects.project import ProjectConfig
from alembic_autocopy.effects.temporary import TEMP_NAME, TEMP_SUFFIX, new_temporary

MANIFEST_NAME = "alembic-autocopy/manifest.json"
MANIFEST_VERSION = 2
IGNORE_MARKER = "# alembic-autocopy: managed file"
_IGNORE_HEADER = (
    f"{IGNORE_MARKER}. Migrations copied from other worktrees, ignored in this\n"
    "# worktree only. Do not commit this file; `alembic-autocopy clean` removes the copies.\n"
)

# Temporary files (``temporary.new_temporary``): Alembic never loads them (no ``.py``
# suffix), the managed .gitignore hides them, and the next run removes those whose process
# is gone (a SIGKILL leaves one behind). They go to the worktree's private scratch folder in
# its git folder when that is on the same filesystem, so none ever appears in the worktree.
TEMP_PATTERN = "/.*" + TEMP_SUFFIX
SCRATCH_NAME = "tmp"
_STALE_AFTER = 3600.0  # seconds: a temporary file without a readable pid this old is stale

ContentReader = Callable[[Candidate], bytes]


MANIFEST_VERSION_ABSOLUTE = 1  # entries held absolute paths (before version 2)


class Manifest:
    """Every copy this tool placed in one worktree.

    On disk, paths are relative to ``base`` (the worktree root): a worktree moved with
    ``git worktree move`` (or a repository moved with ``mv``) still names its own files, never
    those of whatever checkout now sits at the old path. In memory they are absolute. ``allowed``
    holds the folders this tool may write in (the version folders, its state folder);
    ``ignores`` the sha256 of each managed ``.gitignore`` as last written (ownership)."""

    def __init__(self, path: Path, entries: list[ManifestEntry], base: Path | None,
                 allowed: tuple[Path, ...], ignores: dict[str, str],
                 worktree_root: Path | None) -> None:
        self.path = path
        self.entries = entries
        self.base = base
        self.allowed = allowed
        self.ignores = ignores
        self.worktree_root = worktree_root

    def by_path(self) -> dict[str, ManifestEntry]:
        return {entry.path: entry for entry in self.entries}

    def save(self) -> None:
        confine(self.path, (self.path.parent,), "write the manifest")
        payload = {"version": MANIFEST_VERSION,
                   "worktree": str(self.base) if self.base is not None else None,
                   "git_dir": str(self.path.parent.parent),
                   "entries": [self._entry_json(entry) for entry in self.entries],
                   "ignores": {self._stored(path): digest
                               for path, digest in sorted(self.ignores.items())}}
        content = (json.dumps(payload, indent=2) + "\n").encode()
        try:
            current = _read_or_none(self.path)
        except OSError:
            current = None
        if current == content or (current is None and not self.entries
                                  and not self.ignores):
            return  # unchanged (or nothing to record): no write at all
        atomic_write(self.path, content)

    def _entry_json(self, entry: ManifestEntry) -> dict[str, str | None]:
        return {"revision": entry.revision, "path": self._stored(entry.path),
                "sha256": entry.sha256, "source": entry.source,
                "source_path": entry.source_path, "placed_at": entry.placed_at}

    def _stored(self, path: str) -> str:
        if self.base is None:
            return path
        relative = os.path.relpath(path, self.base)
        return path if relative.startswith("..") else Path(relative).as_posix()

    def _loaded(self, path: str) -> str:
        if self.base is None or os.path.isabs(path):
            return path
        return str(self.base / path)


def manifest_path(project: ProjectConfig, worktree_root: Path | None) -> Path:
    if worktree_root is not None:
        return git.git_path(worktree_root, MANIFEST_NAME)
    return project.here / ".alembic-autocopy" / "manifest.json"


def open_manifest(project: ProjectConfig, worktree_root: Path | None) -> Manifest:
    """This worktree's manifest, bound to it: entries resolved against its root, and only
    those inside its own version folders kept."""
    path = manifest_path(project, worktree_root)
    base = worktree_root if worktree_root is not None else project.here
    return load_manifest(path, base, (*project.version_locations, path.parent), worktree_root)


def load_manifest(path: Path, base: Path | None = None, allowed: Sequence[Path] = (),
                  worktree_root: Path | None = None) -> Manifest:
    """Read the manifest; a missing or unreadable one is empty (the copies stay listed in the
    managed .gitignore, so nothing is lost).

    With ``allowed``, an entry whose path is not inside those folders is dropped: a manifest
    written before paths were relative (version 1) names the worktree's OLD place after a
    move, where another checkout may now live; nothing there is ours."""
    manifest = Manifest(path, [], base, tuple(allowed), {}, worktree_root)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        raw_entries = [ManifestEntry(**entry) for entry in data.get("entries", [])]
        raw_ignores = {str(k): str(v) for k, v in dict(data.get("ignores", {})).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return manifest
    if manifest.base is None and isinstance(data.get("worktree"), str):
        manifest.base = Path(data["worktree"])  # a caller that did not say (use open_manifest)
    confinement = Confinement(allowed)
    for entry in raw_entries:
        full = manifest._loaded(entry.path)
        if not allowed or confinement.contains(Path(full)):
            manifest.entries.append(entry._replace(path=full))
    for stored, digest in raw_ignores.items():
        if Path(stored).name == ".gitignore":  # nothing else is ever an ignore of ours
            manifest.ignores[manifest._loaded(stored)] = digest
    return manifest


# --- confinement ----------------------------------------------------------------------------

class Confinement:
    """The folders a file operation may touch, with each folder's real path resolved once:
    for checking many paths in one step (``is_confined`` and ``confine`` check one)."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = tuple(folders)
        self._real: dict[str, str] = {}
        self._allowed = [self._realpath(os.fspath(folder)) for folder in self.folders]

    def _realpath(self, folder: str) -> str:
        real = self._real.get(folder)
        if real is None:
            real = self._real[folder] = os.path.realpath(folder)
        return real

    def contains(self, path: Path) -> bool:
        """Is ``path`` a plain name inside one of the folders (symlinked folders resolved)?"""
        if path.name in ("", ".", ".."):
            return False
        parent = self._realpath(os.fspath(path.parent))
        return any(parent == real or parent.startswith(real.rstrip(os.sep) + os.sep)
                   for real in self._allowed)

    def check(self, path: Path, action: str) -> None:
        """Refuse any file operation outside the folders: checked right before the
        operation, whatever name or manifest line led there."""
        if not self.contains(path):
            raise PlacementError(
                f"refusing to {action} {path}: it is outside this worktree's version folders "
                f"({', '.join(str(f) for f in self.folders)})",
                hint="nothing was changed there; report the source that named this path")


def is_confined(path: Path, folders: Iterable[Path]) -> bool:
    """Is ``path`` a plain name inside one of ``folders`` (symlinked folders resolved)?"""
    return Confinement(folders).contains(path)


def confine(path: Path, folders: Iterable[Path], action: str) -> None:
    """Refuse any file operation outside ``folders``: checked at the moment of the
    operation, whatever name or manifest line led there."""
    Confinement(folders).check(path, action)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def scratch_folder(manifest_file: Path) -> Path:
    """The worktree's private folder for temporary files (beside the manifest)."""
    return manifest_file.parent / SCRATCH_NAME


def _temporary_folder(folder: Path, scratch: Path | None) -> Path:
    """``scratch`` when a rename from it into ``folder`` is atomic (same filesystem)."""
    if scratch is not None:
        try:
            if os.stat(scratch).st_dev == os.stat(folder).st_dev:
                return scratch
        except OSError:
            pass
    return folder


def _temporary_file(path: Path, scratch: Path | None) -> tuple[int, str]:
    return new_temporary(_temporary_folder(path.parent, scratch), path.name)


def remove_stale_temporaries(folders: Iterable[Path]) -> list[Path]:
    """Remove temporary files left by a killed run (its process is gone). Call it while
    holding the worktree lock: no run of ours is then writing in these folders."""
    removed: list[Path] = []
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                names = [entry.name for entry in entries if entry.name.endswith(TEMP_SUFFIX)]
        except OSError:
            continue
        for name in names:
            path = folder / name
            if _is_stale(path, TEMP_NAME.match(name)):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


def _is_stale(path: Path, match: re.Match[str] | None) -> bool:
    if match is not None:
        pid = int(match.group("pid"))
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError, OSError):
            return False
        return False
    try:
        return time.time() - path.lstat().st_mtime > _STALE_AFTER
    except OSError:
        return False


def _across_mounts(error: OSError, scratch: Path | None) -> bool:
    """A rename or link from the scratch folder refused because the destination is another
    mount of the same file system (a bind mount has the same st_dev)."""
    return scratch is not None and error.errno == errno.EXDEV


def atomic_write(path: Path, content: bytes, scratch: Path | None = None) -> None:
    """Write ``content`` to ``path`` through a temporary file + rename (never partial)."""
    try:
        _atomic_write(path, content, scratch)
    except OSError as error:
        if not _across_mounts(error, scratch):
            raise
        _atomic_write(path, content, None)


def _atomic_write(path: Path, content: bytes, scratch: Path | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = _temporary_file(path, scratch)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def create_exclusively(path: Path, content: bytes, scratch: Path | None = None) -> None:
    """Create ``path`` atomically with ``content``; fail if anything exists there already."""
    try:
        _create_exclusively(path, content, scratch)
    except OSError as error:
        if not _across_mounts(error, scratch):
            raise
        _create_exclusively(path, content, None)


def _create_exclusively(path: Path, content: bytes, scratch: Path | None) -> None:
    descriptor, temporary = _temporary_file(path, scratch)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # atomic, and refuses to replace an existing file
        except FileExistsError:
            raise PlacementError(f"refusing to overwrite {path}: it appeared during the run",
                                 hint="run the command again") from None
        except OSError as error:
            if path.exists():
                raise PlacementError(f"refusing to overwrite {path}") from None
            if error.errno in (errno.EXDEV, errno.EROFS, errno.EACCES, errno.ENOSPC):
                raise
            os.replace(temporary, path)  # filesystems without hard links
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


# --- the managed .gitignore -------------------------------------------------------------
#
# A managed .gitignore is the tool's only if its bytes are exactly what the tool last wrote
# (sha256 kept in the manifest) and git does not track it. One that git (a merge) or the user
# replaced is never rewritten nor removed: the copies of that folder are then listed in a
# managed .gitignore one folder up (untracked, listing itself), so `git add -A` still cannot
# pick them up; when no folder up to the worktree root is free, the command says how.

def _escape_pattern(name: str) -> str:
    escaped = "".join("\\" + ch if ch in "*?[\\" else ch for ch in name)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def ignore_file_for(folder: Path) -> Path:
    return folder / ".gitignore"


def is_managed_ignore(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().startswith(IGNORE_MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def ignored_names(ignore_path: Path) -> list[str]:
    """Relative names listed in a managed .gitignore (without the leading slash)."""
    if not is_managed_ignore(ignore_path):
        return []
    names = []
    for line in ignore_path.read_text(encoding="utf-8").splitlines():
        if (line.startswith("/") and line != "/.gitignore"
                and not line.endswith(TEMP_PATTERN)):
            names.append(_unescape_pattern(line[1:]))
    return names


def _unescape_pattern(pattern: str) -> str:
    out, escaping = [], False
    for ch in pattern:
        if escaping:
            out.append(ch)
            escaping = False
        elif ch == "\\":
            escaping = True
        else:
            out.append(ch)
    return "".join(out)


def render_ignore(names: Iterable[str], folders: Iterable[str] = ("",)) -> bytes:
    """The managed .gitignore listing ``names`` (relative to its folder); ``folders``: the
    sub-folders (relative, "" for its own) whose temporary files it hides."""
    lines = [_IGNORE_HEADER.rstrip("\n"), "/.gitignore"]
    lines += [("/" + _escape_pattern(f) if f else "") + TEMP_PATTERN
              for f in sorted(set(folders))]
    lines += ["/" + _escape_pattern(name) for name in sorted(set(names))]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _owns_ignore(manifest: Manifest, path: Path, tracked: set[Path]) -> bool:
    """May the tool write (or remove) ``path``? Absent, or exactly what it last wrote."""
    if path in tracked:
        return False
    try:
        content = _read_or_none(path)
    except OSError:
        return False
    if content is None:
        return not path.is_symlink()
    recorded = manifest.ignores.get(str(path))
    if recorded is not None:
        return _sha(content) in recorded.split()
    # Written before ownership was recorded: ours only if it is byte for byte what the tool
    # writes for the names it lists.
    return is_managed_ignore(path) and content == render_ignore(ignored_names(path))


def _chain(folder: Path, root: Path) -> list[Path]:
    """``folder`` and its parents up to ``root`` (inclusive), when inside ``root``."""
    chain = [folder]
    current = folder
    try:
        Path(os.path.realpath(folder)).relative_to(os.path.realpath(root))
    except ValueError:
        return chain  # a version folder outside the worktree: its own .gitignore only
    while os.path.realpath(current) != os.path.realpath(root) and current.parent != current:
        current = current.parent
        chain.append(current)
    return chain


class _IgnorePlan(NamedTuple):
    contents: dict[Path, bytes]  # ignore file -> what it must hold (b"": remove it)
    unhidden: list[ManifestEntry]


def _plan_ignores(manifest: Manifest) -> _IgnorePlan:
    """What each ignore file must hold for the manifest's copies: each copy is listed in
    the nearest .gitignore the tool owns, from its folder up to the worktree root."""
    root = manifest.worktree_root
    assert root is not None
    folders = sorted({Path(entry.path).parent for entry in manifest.entries})
    chains = {folder: _chain(folder, root) for folder in folders}
    owned = _ownership(manifest, root, chains)
    home = {folder: where for folder, chain in chains.items()
            if (where := _first_owned(chain, owned)) is not None}
    contents, unhidden = _listings(manifest.entries, home)
    # An ignore of ours that lists nothing any more goes away.
    for path, ours in owned.items():
        if ours and path not in contents and os.path.lexists(path):
            contents[path] = b""
    for recorded in list(manifest.ignores):
        if not owned.get(Path(recorded), False):
            del manifest.ignores[recorded]  # git or the user replaced it: theirs now
    return _IgnorePlan(contents, unhidden)


def _ownership(manifest: Manifest, root: Path,
               chains: dict[Path, list[Path]]) -> dict[Path, bool]:
    """Every .gitignore that may list a copy, or that the tool wrote: may it write it?"""
    paths = {ignore_file_for(f) for chain in chains.values() for f in chain}
    paths |= {Path(p) for p in manifest.ignores}
    tracked = git.tracked(root, sorted(paths)) if paths else set()
    return {path: _owns_ignore(manifest, path, tracked) for path in paths}


def _first_owned(chain: Sequence[Path], owned: dict[Path, bool]) -> Path | None:
    """The first folder of ``chain`` whose .gitignore the tool may write."""
    for folder in chain:
        if owned[ignore_file_for(folder)]:
            return folder
    return None


def _listings(entries: Sequence[ManifestEntry], home: dict[Path, Path]
              ) -> tuple[dict[Path, bytes], list[ManifestEntry]]:
    """Each owned .gitignore's content (the copies it hides, and the temporary files of
    their folders), and the copies no .gitignore of the tool can hide."""
    names: dict[Path, list[str]] = {}
    subfolders: dict[Path, set[str]] = {}
    unhidden: list[ManifestEntry] = []
    relative_folders: dict[Path, str] = {}  # each folder's path from its .gitignore, once
    for entry in entries:
        path = Path(entry.path)
        where = home.get(path.parent)
        if where is None:
            unhidden.append(entry)
            continue
        if path.parent not in relative_folders:
            relative = os.path.relpath(path.parent, where)
            relative_folders[path.parent] = "" if relative == "." else Path(relative).as_posix()
        folder = relative_folders[path.parent]
        names.setdefault(where, []).append(f"{folder}/{path.name}" if folder else path.name)
        subfolders.setdefault(where, set()).add(folder)
    contents = {ignore_file_for(where): render_ignore(listed, subfolders[where])
                for where, listed in names.items()}
    return contents, unhidden


def _confine_ignore(manifest: Manifest, path: Path) -> None:
    """A managed .gitignore lives in a version folder or in one of its parents inside the
    worktree (never anywhere else)."""
    if path.name != ".gitignore":
        raise PlacementError(f"refusing to write {path}: not a .gitignore")
    root = manifest.worktree_root
    if root is not None:
        parents = {os.path.realpath(f) for folder in manifest.allowed
                   for f in _chain(folder, root)}
        if os.path.realpath(path.parent) in parents:
            return
    confine(path, manifest.allowed, "write")


def sync_ignores(manifest: Manifest, scratch: Path | None = None,
                 plan: _IgnorePlan | None = None) -> list[ManifestEntry]:
    """Make the managed .gitignore files list exactly the manifest's copies (only files the
    tool owns are touched); returns the copies no .gitignore of the tool can hide. Saves the
    manifest (the ownership record goes first: a kill at any point leaves each file either
    as it was or as written, both recognised). ``plan``: ``_plan_ignores`` of this very
    manifest, when the caller has it already (each plan asks git what it tracks)."""
    if manifest.worktree_root is None:
        return []
    plan = plan if plan is not None else _plan_ignores(manifest)
    changes: dict[Path, bytes] = {}
    for path, content in plan.contents.items():
        try:
            current = _read_or_none(path)
        except OSError:
            current = None
        if current != (content or None):
            changes[path] = content
            before = [_sha(current)] if current is not None else []
            manifest.ignores[str(path)] = " ".join([*before, _sha(content)])
    manifest.save()
    for path, content in changes.items():
        _confine_ignore(manifest, path)
        if content:
            atomic_write(path, content, scratch)
            manifest.ignores[str(path)] = _sha(content)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            manifest.ignores.pop(str(path), None)
    if changes:
        manifest.save()
    return plan.unhidden


def check_ignore_usable(folder: Path, worktree_root: Path | None) -> None:
    """Kept for callers of earlier versions: any folder is usable now (see sync_ignores)."""
    return None


# --- placing ------------------------------------------------------------------------------

class Placement(NamedTuple):
    candidate: Candidate
    destination: Path


def destinations(bring: Sequence[Candidate], project: ProjectConfig,
                 worktree_root: Path | None,
                 target_for: Callable[[Candidate], Path] | None = None) -> list[Placement]:
    """Where each candidate goes; validated (a plain name inside a version folder, never an
    existing file nor a path git tracks, never twice the same name) before anything is
    written."""
    placements: list[Placement] = []
    seen: set[Path] = set()
    confinements: dict[Path, Confinement] = {}
    for candidate in bring:
        folder = target_for(candidate) if target_for else project.version_locations[0]
        relative = (candidate.relative_path or candidate.filename).replace(os.sep, "/")
        if not project.recursive_version_locations:
            relative = relative.rpartition("/")[2]
        problem = refusal(relative, recursive=project.recursive_version_locations)
        if problem is not None:
            raise PlacementError(
                f"refusing to copy revision {candidate.revision} from "
                f"{candidate.location.describe()} as {relative!r}: {problem}",
                hint="nothing was written; rename the file where it lives")
        destination = folder.joinpath(*relative.split("/"))
        confinement = confinements.get(folder)
        if confinement is None:  # once per folder: it resolves the folder's real path
            confinement = confinements[folder] = Confinement([folder])
        confinement.check(destination, "write")
        if os.path.lexists(destination):  # a file, a folder, a link (even a broken one)
            raise PlacementError(
                f"refusing to overwrite {destination} with revision {candidate.revision} "
                f"from {candidate.location.describe()}",
                hint="that file is not the revision the database needs; rename or move it",
            )
        if destination in seen:
            raise PlacementError(f"two revisions would be copied to {destination}",
                                 hint="rename one of the source files")
        seen.add(destination)
        placements.append(Placement(candidate, destination))
    if worktree_root is not None and placements:
        tracked = git.tracked(worktree_root, [p.destination for p in placements])
        for p in placements:
            if p.destination in tracked:
                raise PlacementError(
                    f"refusing to copy revision {p.candidate.revision} to {p.destination}: "
                    "git tracks that path in this worktree (a sparse checkout leaves it out)",
                    hint="check it out instead, e.g. `git sparse-checkout add "
                         f"{os.path.relpath(p.destination.parent, worktree_root)}`; "
                         "nothing was written")
    return placements


def _ensure_loadable(candidate: Candidate, content: bytes, filename: str) -> CodeType:
    """Scanning reads only the header; before a file becomes code that Alembic imports, the
    whole of it must compile (a file broken below its header would stop every Alembic
    command in this worktree). Compiled as the import system compiles it (``filename``:
    where it will live), once: ``place`` writes this code as the file's bytecode cache, so
    that Alembic's import of the copy does not compile it a second time."""
    try:
        with warnings.catch_warnings():  # the parser's warnings, as in parsing.py
            warnings.simplefilter("ignore")
            return compile(content, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as error:
        # The refusal names the cause in the words of the exact reader (parsing.py).
        try:
            parse_migration(content, max_bytes=max(len(content), 1), check_syntax=True)
            reason = f"syntax error: {error}"
        except MigrationParseError as parse_error:
            reason = str(parse_error)
        where = candidate.location.path or candidate.location.describe()
        raise PlacementError(
            f"revision {candidate.revision} in {where} is not a loadable migration: {reason}",
            hint="fix the file where it lives (or choose another copy with --prefer); "
                 "nothing was changed") from None


# Errors of the file system a user can fix (space, permissions, read-only mounts).
_FAULT_HINTS = {
    errno.ENOSPC: "free some space there, then run again",
    errno.EDQUOT: "free some space (disk quota) there, then run again",
    errno.EFBIG: "the file size limit (ulimit -f) was reached; raise it, then run again",
    errno.EROFS: "it is on a read-only file system; make it writable, then run again",
    errno.EACCES: "you may not write there; fix its permissions, then run again",
    errno.EPERM: "you may not write there; fix its permissions, then run again",
}


def fault_error(error: OSError, folder: Path) -> PlacementError:
    """One user error for a write the file system refused (names the folder and cause)."""
    cause = error.strerror or str(error)
    name = errno.errorcode.get(error.errno or 0, "")
    hint = _FAULT_HINTS.get(error.errno or 0, "fix the cause, then run again")
    return PlacementError(f"cannot write in {folder}: {cause}" + (f" ({name})" if name else ""),
                          hint=hint + "; nothing was changed")


def read_verified(placements: Sequence[Placement], read_content: ContentReader) -> list[bytes]:
    """The content of each copy, checked (same sha256 as planned, the whole file compiles):
    what ``place`` checks before writing, and ``check``/``upgrade --dry-run`` before planning
    out loud, in the same words."""
    return [content for content, _code in _read_compiled(placements, read_content)]


def _read_compiled(placements: Sequence[Placement],
                   read_content: ContentReader) -> list[tuple[bytes, CodeType]]:
    """``read_verified``, with the code each content compiles to."""
    compiled: list[tuple[bytes, CodeType]] = []
    for placement in placements:
        content = read_content(placement.candidate)
        if hashlib.sha256(content).hexdigest() != placement.candidate.sha256:
            raise PlacementError(
                f"{placement.candidate.location.path or placement.candidate.revision} changed "
                "while alembic-autocopy was running", hint="run the command again")
        code = _ensure_loadable(placement.candidate, content,
                                os.fspath(placement.destination))
        compiled.append((content, code))
    return compiled


def place(placements: Sequence[Placement], manifest: Manifest, read_content: ContentReader,
          worktree_root: Path | None, scratch: Path | None = None) -> list[ManifestEntry]:
    """Copy each file; record it in the manifest first (crash-safe), then the ignore file.

    A kill at any moment leaves no partial file: every file appears whole, by a rename or a
    hard link; a manifest entry whose copy never appeared is dropped by the next
    ``reconcile``. A write the file system refuses (full, read-only, no permission) undoes
    the whole set (copies, manifest, .gitignore) and raises one PlacementError naming the
    folder and the cause. ``scratch``: where temporary files go (see ``scratch_folder``)."""
    compiled = _read_compiled(placements, read_content)
    placed_at = now_iso()
    new_entries = [
        ManifestEntry(
            revision=p.candidate.revision, path=str(p.destination), sha256=p.candidate.sha256,
            source=p.candidate.location.describe(), source_path=p.candidate.location.path,
            placed_at=placed_at,
        )
        for p in placements
    ]
    plan = _plan_hiding(manifest, new_entries) if worktree_root is not None else None
    before = list(manifest.entries)
    progress = _Progress(manifest.path.parent)
    try:
        # Folders first: a kill leaves at most empty folders, which git does not see.
        if scratch is not None:
            scratch.mkdir(parents=True, exist_ok=True)
        for placement in placements:
            progress.folder = placement.destination.parent
            progress.made += _make_folders(progress.folder, manifest.allowed)
        manifest.entries.extend(new_entries)
        if worktree_root is not None and placements:
            progress.folder = placements[0].destination.parent
            # saves the new entries together with the ignore files' ownership record; the
            # plan made before holds while no folder was created since
            sync_ignores(manifest, scratch, None if progress.made else plan)
        else:
            manifest.save()
        confinement = Confinement(manifest.allowed)
        for placement in placements:
            confinement.check(placement.destination, "write")
        _create_all(placements, [content for content, _ in compiled], scratch, progress)
    except BaseException as error:
        _undo(manifest, before, progress.written, progress.made, scratch)
        if isinstance(error, OSError):
            raise fault_error(error, progress.folder) from error
        raise
    for placement, (_, code) in zip(placements, compiled, strict=True):
        write_bytecode(placement.destination, code)
    return new_entries


def _plan_hiding(manifest: Manifest, new_entries: list[ManifestEntry]) -> _IgnorePlan:
    """The ignore files' plan once ``new_entries`` are in the manifest; refuses (nothing
    written yet) when one of them could not be hidden from git."""
    probe = Manifest(manifest.path, [*manifest.entries, *new_entries], manifest.base,
                     manifest.allowed, dict(manifest.ignores), manifest.worktree_root)
    plan = _plan_ignores(probe)
    unhidden = [e for e in plan.unhidden if e in new_entries]
    if unhidden:
        folder = Path(unhidden[0].path).parent
        raise PlacementError(
            f"cannot hide copies from git in {folder}: its .gitignore, and every one "
            "above it up to the worktree root, belongs to git or to you",
            hint=f"remove {ignore_file_for(folder)} if it is not needed, or let "
                 f"alembic-autocopy use {ignore_file_for(folder.parent)} (delete it "
                 "there if it is yours and untracked); nothing was changed")
    return plan


class _Progress:
    """How far ``place`` got: what to undo, and the folder a refused write was for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: list[Path] = []
        self.made: list[Path] = []


def _create_all(placements: Sequence[Placement], contents: Sequence[bytes],
                scratch: Path | None, progress: _Progress) -> None:
    """Create every copy whole, as ``create_exclusively`` does one, without waiting for
    one flush to disk per file in turn: every temporary file is written, all are flushed
    at once (``_sync_written``), then each is hard-linked to its name (never replacing a
    file) and each destination folder synced once. A crash before a link leaves only
    temporary files (removed by the next run) and manifest entries without a file
    (dropped by ``reconcile``); a linked file is whole."""
    temporaries: list[tuple[Placement, str]] = []
    temporary_folders: dict[Path, Path] = {}  # each destination folder's, asked once
    try:
        for placement, content in zip(placements, contents, strict=True):
            progress.folder = placement.destination.parent
            if progress.folder not in temporary_folders:
                temporary_folders[progress.folder] = _temporary_folder(progress.folder,
                                                                       scratch)
            temporaries.append((placement, _write_temporary(
                placement.destination, content, temporary_folders[progress.folder])))
        _sync_written([temporary for _, temporary in temporaries])
        for placement, temporary in temporaries:
            progress.folder = placement.destination.parent
            _link_exclusively(temporary, placement.destination, scratch)
            progress.written.append(placement.destination)
        _sync_folders({placement.destination.parent for placement in placements})
    finally:
        for _, temporary in temporaries:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _write_temporary(path: Path, content: bytes, folder: Path) -> str:
    """A temporary file in ``folder`` for ``path`` holding ``content`` (not yet flushed to
    disk)."""
    descriptor, temporary = new_temporary(folder, path.name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return temporary


def _link_exclusively(temporary: str, path: Path, scratch: Path | None) -> None:
    """Give ``temporary`` (already on disk) the name ``path``; never replace a file."""
    try:
        os.link(temporary, path)  # atomic, and refuses to replace an existing file
    except FileExistsError:
        raise PlacementError(f"refusing to overwrite {path}: it appeared during the run",
                             hint="run the command again") from None
    except OSError as error:
        if path.exists():
            raise PlacementError(f"refusing to overwrite {path}") from None
        if _across_mounts(error, scratch):  # scratch on another mount: write beside it
            create_exclusively(path, Path(temporary).read_bytes(), None)
            return
        if error.errno in (errno.EXDEV, errno.EROFS, errno.EACCES, errno.ENOSPC):
            raise
        os.replace(temporary, path)  # filesystems without hard links


# Threads flushing at once (``_sync_written``), each its share of the files: one task per
# file would cost ~20 ms more CPU for 500 files (the executor's queue and futures).
_SYNC_THREADS = 8


def _sync_written(paths: Sequence[str]) -> None:
    """Flush each file at ``paths`` to disk with its own ``fsync``, several at once.

    Only an ``fsync`` of the file itself promises, on every file system, that its data and
    size are on disk: a crash then never leaves a name (linked after this) on a partial
    file. One after another, each waits for its own journal commit and disk-cache flush:
    0.3 ms each on a quiet machine, several ms on a busy one, seconds for a few hundred
    files. Issued from a few threads at once, they share them: a journaling file system
    (ext4, XFS, btrfs) commits once for all the ``fsync`` calls waiting, and the block
    layer merges their cache flushes (500 copies: +50 ms, against +175 ms one after
    another). Not ``syncfs``: one call, but it also waits for every other process's
    unwritten data on that file system (a build, a fresh checkout: +320 ms with 200 MB).
    Nor ``sync_file_range`` and one ``fsync`` (git's ``core.fsyncMethod=batch``): it
    writes out no metadata, and its manual promises nothing after a crash. Where no thread
    can be started, one after another."""
    shares = [paths[start::_SYNC_THREADS] for start in range(_SYNC_THREADS)]
    shares = [share for share in shares if share]
    if len(shares) < 2:
        _fsync_each(paths)
        return
    from concurrent.futures import ThreadPoolExecutor  # only a run that writes copies

    try:
        with ThreadPoolExecutor(len(shares)) as pool:
            for _ in pool.map(_fsync_each, shares):
                pass
    except RuntimeError:  # no thread could be started (a limit on threads or processes)
        _fsync_each(paths)


def _fsync_each(paths: Iterable[str]) -> None:
    for path in paths:
        _fsync_path(path)


def _fsync_path(path: str) -> None:
    # open for writing: Windows flushes no file through a read-only handle
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_folders(folders: Iterable[Path]) -> None:
    """Make the new names in ``folders`` durable (one ``fsync`` per folder, where the
    platform can open a folder)."""
    for folder in folders:
        try:
            descriptor = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(descriptor)
        except OSError:
            pass  # a file system that cannot sync folders
        finally:
            os.close(descriptor)


def write_bytecode(path: Path, code: CodeType) -> None:
    """Write ``code`` (``path`` compiled as the import system does) as the bytecode cache
    the import system would write for ``path`` (``__pycache__``, timestamp-checked, PEP
    552), so that Alembic's import of the copy reads it instead of compiling the file
    again. Only a cache: any failure leaves Python to compile the file as usual; nothing is
    written when the interpreter writes no bytecode or puts it elsewhere (a prefix)."""
    if sys.dont_write_bytecode or sys.pycache_prefix:
        return
    try:
        cache = Path(importlib.util.cache_from_source(os.fspath(path)))
        if cache.parent != path.parent / "__pycache__":
            return
        source = os.stat(path)
        data = b"".join([importlib.util.MAGIC_NUMBER, (0).to_bytes(4, "little"),
                         (int(source.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little"),
                         (source.st_size & 0xFFFFFFFF).to_bytes(4, "little"),
                         marshal.dumps(code)])
        cache.parent.mkdir(exist_ok=True)
        descriptor, temporary = new_temporary(cache.parent, cache.name)
    except (OSError, ValueError, NotImplementedError):
        return
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, cache)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _make_folders(folder: Path, allowed: Sequence[Path]) -> list[Path]:
    """Create ``folder`` (inside a version folder) and return what did not exist before."""
    missing: list[Path] = []
    current = folder
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        confine(path, [*allowed, *(a.parent for a in allowed)], "create")
        path.mkdir(exist_ok=True)
    return missing


def _undo(manifest: Manifest, before: list[ManifestEntry], written: Sequence[Path],
          made: Sequence[Path], scratch: Path | None) -> None:
    """Take back a copy set the file system refused half-way: the copies written (space
    comes back first), then the .gitignore and the manifest as they were. Best effort: what
    cannot be undone now is found and dropped by the next run's ``reconcile``."""
    for path in written:
        with contextlib.suppress(OSError):
            path.unlink()
    for path in made:
        with contextlib.suppress(OSError):
            path.rmdir()
    manifest.entries = before
    with contextlib.suppress(OSError, GitError, PlacementError):
        sync_ignores(manifest, scratch)
    with contextlib.suppress(OSError):
        manifest.save()


# --- keeping the manifest true ---------------------------------------------------------------

class CleanReport:
    def __init__(self) -> None:
        self.removed: list[ManifestEntry] = []
        self.kept_modified: list[ManifestEntry] = []
        self.now_tracked: list[ManifestEntry] = []
        self.vanished: list[ManifestEntry] = []
        # copies the database still needs and no other file here provides (kept without --all)
        self.kept_needed: list[ManifestEntry] = []
        # copies no managed .gitignore can hide (git or the user owns every .gitignore above)
        self.unhidden: list[ManifestEntry] = []


def reconcile(manifest: Manifest, worktree_root: Path | None,
              dry_run: bool = False) -> CleanReport:
    """Drop entries whose file is gone or now tracked by git (git brought the real file);
    keep the ignore files in step. Returns what changed (nothing is deleted here).
    ``dry_run``: say it, change nothing."""
    report = CleanReport()
    tracked = _tracked_entries(manifest.entries, worktree_root)
    kept: list[ManifestEntry] = []
    for entry in manifest.entries:
        if entry.path in tracked:
            report.now_tracked.append(entry)
        elif not os.path.lexists(entry.path):
            report.vanished.append(entry)
        else:
            kept.append(entry)
    if dry_run:
        return report
    manifest.entries = kept
    report.unhidden = sync_ignores(manifest)
    return report


def still_copies(manifest: Manifest, worktree_root: Path | None
                 ) -> tuple[list[ManifestEntry], list[ManifestEntry]]:
    """(entries that are still copies, entries whose path git now tracks: a merge or a
    checkout brought the real file). Reads only; ``reconcile`` later forgets the second."""
    tracked = _tracked_entries(manifest.entries, worktree_root)
    return ([entry for entry in manifest.entries if entry.path not in tracked],
            [entry for entry in manifest.entries if entry.path in tracked])


def clean(manifest: Manifest, worktree_root: Path | None, dry_run: bool = False,
          needed: Callable[[ManifestEntry], bool] | None = None) -> CleanReport:
    """Remove every copy whose content is unchanged; keep and name the modified ones, and
    those ``needed`` says the database still needs. A removal re-checks, right before it,
    that the file is inside this worktree's version folders, is a regular file with the
    content the tool wrote, and is not tracked by git here (``reconcile``)."""
    report = reconcile(manifest, worktree_root, dry_run=dry_run)
    gone = {id(e) for e in (*report.now_tracked, *report.vanished)}
    kept: list[ManifestEntry] = []
    for entry in manifest.entries:
        if id(entry) in gone:
            continue
        path = Path(entry.path)
        if needed is not None and needed(entry):
            report.kept_needed.append(entry)
            kept.append(entry)
        elif os.path.isfile(path) and not path.is_symlink() and file_sha256(path) == entry.sha256:
            confine(path, manifest.allowed, "remove")
            report.removed.append(entry)
            if not dry_run:
                os.unlink(path)
        else:
            report.kept_modified.append(entry)
            kept.append(entry)
    if not dry_run:
        manifest.entries = kept
        report.unhidden = sync_ignores(manifest)
    return report


def unhidden_warning(entries: Sequence[ManifestEntry]) -> list[str]:
    """One line per copy no .gitignore of the tool can hide, with what to do."""
    return [f"{entry.path} (revision {entry.revision}) is not hidden from git: the "
            f"{ignore_file_for(Path(entry.path).parent)} there (and every one above it) "
            "belongs to git or to you; add "
            f"/{_escape_pattern(Path(entry.path).name)} to it yourself, or run "
            "`alembic-autocopy clean --all` once the database no longer needs it"
            for entry in entries]


def _tracked_entries(entries: Sequence[ManifestEntry], worktree_root: Path | None) -> set[str]:
    """Entries whose path git tracks here. A git failure is an error (raised), never
    "untracked": a file git tracks is never removed."""
    if worktree_root is None or not entries:
        return set()
    paths = [Path(entry.path) for entry in entries]
    found = git.tracked(worktree_root, paths)
    return {str(path) for path in paths if path in found}
