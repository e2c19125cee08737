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
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from alembic_autocopy import git
from alembic_autocopy.errors import GitError, MigrationParseError, PlacementError
from alembic_autocopy.model import Candidate, ManifestEntry
from alembic_autocopy.parsing import parse_migration
from alembic_autocopy.project import ProjectConfig

MANIFEST_NAME = "alembic-autocopy/manifest.json"
MANIFEST_VERSION = 1
IGNORE_MARKER = "# alembic-autocopy: managed file"
_IGNORE_HEADER = (
    f"{IGNORE_MARKER}. Migrations copied from other worktrees, ignored in this\n"
    "# worktree only. Do not commit this file; `alembic-autocopy clean` removes the copies.\n"
)

# Temporary files: ``.<name>.<pid>.<random>.aac-tmp``. Alembic never loads them (no ``.py``
# suffix), the managed .gitignore hides them, and the next run removes those whose process
# is gone (a SIGKILL leaves one behind). They go to the worktree's private scratch folder in
# its git folder when that is on the same filesystem, so none ever appears in the worktree.
TEMP_SUFFIX = ".aac-tmp"
TEMP_PATTERN = "/.*" + TEMP_SUFFIX
SCRATCH_NAME = "tmp"
_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")
_STALE_AFTER = 3600.0  # seconds: a temporary file without a readable pid this old is stale

ContentReader = Callable[[Candidate], bytes]


@dataclass
class Manifest:
    """Every copy this tool placed in one worktree."""

    path: Path
    entries: list[ManifestEntry] = field(default_factory=list)

    def by_path(self) -> dict[str, ManifestEntry]:
        return {entry.path: entry for entry in self.entries}

    def save(self) -> None:
        payload = {"version": MANIFEST_VERSION,
                   "entries": [asdict(entry) for entry in self.entries]}
        atomic_write(self.path, (json.dumps(payload, indent=2) + "\n").encode())


def manifest_path(project: ProjectConfig, worktree_root: Path | None) -> Path:
    if worktree_root is not None:
        return git.git_path(worktree_root, MANIFEST_NAME)
    return project.here / ".alembic-autocopy" / "manifest.json"


def load_manifest(path: Path) -> Manifest:
    """Read the manifest; a missing or unreadable one is empty (the copies stay listed in the
    managed .gitignore, so nothing is lost: ``reconcile`` adopts them)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = [ManifestEntry(**entry) for entry in data.get("entries", [])]
    except (OSError, ValueError, TypeError):
        entries = []
    return Manifest(path, entries)


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
    return tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX,
                            dir=_temporary_folder(path.parent, scratch))


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
            if _is_stale(path, _TEMP_NAME.match(name)):
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


def atomic_write(path: Path, content: bytes, scratch: Path | None = None) -> None:
    """Write ``content`` to ``path`` through a temporary file + rename (never partial)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = _temporary_file(path, scratch)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def create_exclusively(path: Path, content: bytes, scratch: Path | None = None) -> None:
    """Create ``path`` atomically with ``content``; fail if anything exists there already."""
    descriptor, temporary = _temporary_file(path, scratch)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        try:
            os.link(temporary, path)  # atomic, and refuses to replace an existing file
        except FileExistsError:
            raise PlacementError(f"refusing to overwrite {path}: it appeared during the run",
                                 hint="run the command again") from None
        except OSError:
            if path.exists():
                raise PlacementError(f"refusing to overwrite {path}") from None
            os.replace(temporary, path)  # filesystems without hard links
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


# --- the managed .gitignore -------------------------------------------------------------

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
        if line.startswith("/") and line not in ("/.gitignore", TEMP_PATTERN):
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


def write_ignore(folder: Path, names: Iterable[str], scratch: Path | None = None) -> None:
    """Rewrite the managed .gitignore of ``folder`` to list ``names``; remove it when empty."""
    path = ignore_file_for(folder)
    unique = sorted(set(names))
    if not unique:
        if is_managed_ignore(path):
            path.unlink()
        return
    lines = [_IGNORE_HEADER.rstrip("\n"), "/.gitignore", TEMP_PATTERN]
    lines += ["/" + _escape_pattern(name) for name in unique]
    atomic_write(path, ("\n".join(lines) + "\n").encode("utf-8"), scratch)


def check_ignore_usable(folder: Path, worktree_root: Path | None) -> None:
    """Refuse to place into a folder whose .gitignore belongs to the user."""
    if worktree_root is None:
        return
    path = ignore_file_for(folder)
    if path.exists() and not is_managed_ignore(path):
        raise PlacementError(
            f"{path} exists and is not managed by alembic-autocopy",
            hint="alembic-autocopy keeps its copies out of git with its own untracked "
                 ".gitignore in the versions folder; move your rules to a parent .gitignore",
        )


# --- placing ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Placement:
    candidate: Candidate
    destination: Path


def destinations(bring: Sequence[Candidate], project: ProjectConfig,
                 worktree_root: Path | None,
                 target_for: Callable[[Candidate], Path] | None = None) -> list[Placement]:
    """Where each candidate goes; validated (never an existing file, never twice the same
    name) before anything is written."""
    placements: list[Placement] = []
    seen: set[Path] = set()
    for candidate in bring:
        folder = target_for(candidate) if target_for else project.version_locations[0]
        relative = candidate.relative_path or candidate.filename
        if not project.recursive_version_locations:
            relative = os.path.basename(relative)
        destination = folder / relative
        if destination.exists() or destination.is_symlink():
            raise PlacementError(
                f"refusing to overwrite {destination} with revision {candidate.revision} "
                f"from {candidate.location.describe()}",
                hint="that file is not the revision the database needs; rename or move it",
            )
        if destination in seen:
            raise PlacementError(f"two revisions would be copied to {destination}",
                                 hint="rename one of the source files")
        seen.add(destination)
        check_ignore_usable(destination.parent, worktree_root)
        placements.append(Placement(candidate, destination))
    return placements


def _ensure_loadable(candidate: Candidate, content: bytes) -> None:
    """Scanning reads only the header; before a file becomes code that Alembic imports, the
    whole of it must compile (a file broken below its header would stop every Alembic
    command in this worktree)."""
    try:
        parse_migration(content, max_bytes=max(len(content), 1), check_syntax=True)
    except MigrationParseError as error:
        where = candidate.location.path or candidate.location.describe()
        raise PlacementError(
            f"revision {candidate.revision} in {where} is not a loadable migration: {error}",
            hint="fix the file where it lives (or choose another copy with --prefer); "
                 "nothing was changed") from None


def read_verified(placements: Sequence[Placement], read_content: ContentReader) -> list[bytes]:
    """The content of each copy, checked (same sha256 as planned, the whole file compiles):
    what ``place`` checks before writing, and ``check``/``upgrade --dry-run`` before planning
    out loud, in the same words."""
    contents: list[bytes] = []
    for placement in placements:
        content = read_content(placement.candidate)
        if hashlib.sha256(content).hexdigest() != placement.candidate.sha256:
            raise PlacementError(
                f"{placement.candidate.location.path or placement.candidate.revision} changed "
                "while alembic-autocopy was running", hint="run the command again")
        _ensure_loadable(placement.candidate, content)
        contents.append(content)
    return contents


def place(placements: Sequence[Placement], manifest: Manifest, read_content: ContentReader,
          worktree_root: Path | None, scratch: Path | None = None) -> list[ManifestEntry]:
    """Copy each file; record it in the manifest first (crash-safe), then the ignore file.

    A kill at any moment leaves no partial file: every file appears whole, by a rename or a
    hard link; a manifest entry whose copy never appeared is dropped by the next
    ``reconcile``. ``scratch``: where temporary files go (see ``scratch_folder``)."""
    contents = read_verified(placements, read_content)
    placed_at = now_iso()
    new_entries = [
        ManifestEntry(
            revision=p.candidate.revision, path=str(p.destination), sha256=p.candidate.sha256,
            source=p.candidate.location.describe(), source_path=p.candidate.location.path,
            placed_at=placed_at,
        )
        for p in placements
    ]
    manifest.entries.extend(new_entries)
    manifest.save()
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    if worktree_root is not None:
        for folder in sorted({p.destination.parent for p in placements}):
            folder.mkdir(parents=True, exist_ok=True)
            existing = ignored_names(ignore_file_for(folder))
            added = [os.path.relpath(p.destination, folder) for p in placements
                     if p.destination.parent == folder]
            write_ignore(folder, existing + added, scratch)
    for placement, content in zip(placements, contents, strict=True):
        placement.destination.parent.mkdir(parents=True, exist_ok=True)
        create_exclusively(placement.destination, content, scratch)
    return new_entries


# --- keeping the manifest true ---------------------------------------------------------------

@dataclass
class CleanReport:
    removed: list[ManifestEntry] = field(default_factory=list)
    kept_modified: list[ManifestEntry] = field(default_factory=list)
    now_tracked: list[ManifestEntry] = field(default_factory=list)
    vanished: list[ManifestEntry] = field(default_factory=list)


def reconcile(manifest: Manifest, worktree_root: Path | None) -> CleanReport:
    """Drop entries whose file is gone or now tracked by git (git brought the real file);
    keep the ignore files in step. Returns what changed (nothing is deleted here)."""
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
    if len(kept) != len(manifest.entries):
        manifest.entries = kept
        manifest.save()
        _rewrite_ignores(report.now_tracked + report.vanished, kept, worktree_root)
    _ensure_ignored(kept, worktree_root)
    return report


def _ensure_ignored(entries: Sequence[ManifestEntry], worktree_root: Path | None) -> None:
    """Every copy the manifest lists is listed in its folder's managed .gitignore (a
    .gitignore deleted or edited by hand is repaired; one the user owns is left alone)."""
    if worktree_root is None:
        return
    by_folder: dict[Path, list[str]] = {}
    for entry in entries:
        folder = Path(entry.path).parent
        by_folder.setdefault(folder, []).append(os.path.relpath(entry.path, folder))
    for folder, names in by_folder.items():
        path = ignore_file_for(folder)
        if path.exists() and not is_managed_ignore(path):
            continue
        listed = ignored_names(path)
        if not set(names) <= set(listed):
            write_ignore(folder, listed + names)


def clean(manifest: Manifest, worktree_root: Path | None, dry_run: bool = False) -> CleanReport:
    """Remove every copy whose content is unchanged; keep and name the modified ones."""
    report = reconcile(manifest, worktree_root)
    kept: list[ManifestEntry] = []
    for entry in manifest.entries:
        if file_sha256(Path(entry.path)) == entry.sha256:
            report.removed.append(entry)
            if not dry_run:
                os.unlink(entry.path)
        else:
            report.kept_modified.append(entry)
            kept.append(entry)
    if not dry_run and report.removed:
        manifest.entries = kept
        manifest.save()
        _rewrite_ignores(report.removed, kept, worktree_root)
    return report


def _tracked_entries(entries: Sequence[ManifestEntry], worktree_root: Path | None) -> set[str]:
    if worktree_root is None or not entries:
        return set()
    paths = [Path(entry.path) for entry in entries]
    try:
        found = git.tracked(worktree_root, paths)
    except GitError:
        return set()
    return {str(path) for path in paths if path in found}


def _rewrite_ignores(dropped: Sequence[ManifestEntry], kept: Sequence[ManifestEntry],
                     worktree_root: Path | None) -> None:
    if worktree_root is None:
        return
    folders = {Path(entry.path).parent for entry in dropped}
    for folder in folders:
        names = [os.path.relpath(entry.path, folder) for entry in kept
                 if Path(entry.path).parent == folder]
        if is_managed_ignore(ignore_file_for(folder)) or names:
            write_ignore(folder, names)
