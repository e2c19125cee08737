"""Plain values shared by the pure core and the boundary modules.

Nothing here touches the filesystem, git or a database: these are the records that
parsing, scanning, planning and placement hand to each other.
"""

# Annotations evaluated, not strings (no `from __future__ import annotations`): a NamedTuple
# compiles each string field's type at import (tests/test_imports.py says why).

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple


class MigrationHeader(NamedTuple):
    """What Alembic reads from a migration file, without running it.

    ``down_revisions``, ``branch_labels`` and ``depends_on`` are always tuples (empty when the
    file says ``None``), in the order the file lists them.
    """

    revision: str
    down_revisions: tuple[str, ...] = ()
    branch_labels: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    message: str | None = None

    @property
    def needs(self) -> tuple[str, ...]:
        """Every revision id (or label) this one cannot be loaded without."""
        return self.down_revisions + self.depends_on


class LocationKind(enum.Enum):
    """Where a candidate file lives, ordered from closest to farthest.

    The order is the order of preference when identical content is found in several places.
    """

    HERE = "here"  # this worktree's own version locations
    WORKTREE = "worktree"  # another worktree of this repository
    CLONE = "clone"  # a worktree of another clone (a configured folder that is a git repo)
    FOLDER = "folder"  # a configured folder that is not a git worktree
    BRANCH = "branch"  # git objects: refs/heads/*
    REMOTE = "remote"  # git objects: refs/remotes/*
    TAG = "tag"  # git objects: refs/tags/*
    STASH = "stash"  # git objects: stash@{n}
    DATABASE = "database"  # the record table of the database

    @property
    def rank(self) -> int:
        return _KIND_ORDER.index(self)

    @property
    def is_file(self) -> bool:
        """True when the candidate is a file on disk (as opposed to a git blob or a record)."""
        return self in (LocationKind.HERE, LocationKind.WORKTREE, LocationKind.CLONE,
                        LocationKind.FOLDER)


_KIND_ORDER = list(LocationKind)


#: ``Location.detail`` of a file this tool placed (see ``Location.is_copy``).
COPY_DETAIL = "copy placed by alembic-autocopy"
#: A context option alembic-autocopy's own runs of env.py pass: they are never healed.
INTERNAL_OPTION = "alembic_autocopy_internal"

class Location(NamedTuple):
    """One place a migration was found, with everything a user needs to recognise it."""

    kind: LocationKind
    path: str | None = None  # absolute file path (file kinds) or repository path (git kinds)
    worktree: str | None = None  # worktree root for file kinds; repository for git kinds
    branch: str | None = None  # checked-out branch of the worktree (None when detached)
    ref: str | None = None  # full ref name for git kinds, e.g. refs/remotes/origin/feature
    commit: str | None = None  # HEAD commit of the worktree, or the commit of the ref
    commit_date: str | None = None  # ISO 8601 committer date of ``commit``
    committed: bool | None = None  # file kinds: is this exact content committed at HEAD?
    blob: str | None = None  # git object id of the content, when known
    detail: str | None = None  # free text, e.g. "recorded by alice@laptop at 2026-11-20T10:00"

    @property
    def is_copy(self) -> bool:
        """A file this tool copied into a worktree (listed in that folder's managed
        .gitignore): the worktree holds it, another place owns it."""
        return self.detail == COPY_DETAIL

    def describe(self) -> str:
        """A short human label: 'worktree ~/Proj-a (feature-a)', 'branch feature-a', ..."""
        if self.kind in (LocationKind.HERE, LocationKind.WORKTREE, LocationKind.CLONE,
                         LocationKind.FOLDER):
            where = self.worktree or self.path or "?"
            label = {
                LocationKind.HERE: "this worktree",
                LocationKind.WORKTREE: f"worktree {where}",
                LocationKind.CLONE: f"clone {where}",
                LocationKind.FOLDER: f"folder {where}",
            }[self.kind]
            if self.kind is not LocationKind.FOLDER and self.branch:
                label += f" ({self.branch})"
            elif self.kind is not LocationKind.FOLDER and self.commit:
                label += f" (detached at {self.commit[:10]})"
            return label
        if self.kind is LocationKind.DATABASE:
            return "database" + (f" ({self.detail})" if self.detail else "")
        short = short_ref(self.ref) if self.ref else "?"
        return f"{self.kind.value} {short}"


def short_ref(ref: str) -> str:
    """``refs/heads/x`` -> ``x``, ``refs/remotes/origin/x`` -> ``origin/x``, tags likewise."""
    for prefix in ("refs/heads/", "refs/remotes/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def reachable(tips: Iterable[str], parents: Mapping[str, Iterable[str]]) -> set[str]:
    """Every revision at or below ``tips`` following ``parents``, gaps tolerated: a parent
    nobody holds is kept and its own parents are simply unknown (Alembic's RevisionMap
    refuses such a graph; drift reports and drawings must still cover it)."""
    seen: set[str] = set()
    stack = [tip for tip in tips if tip]
    while stack:
        revision = stack.pop()
        if revision in seen:
            continue
        seen.add(revision)
        stack.extend(parents.get(revision, ()))
    return seen


class Candidate(NamedTuple):
    """One readable migration found somewhere: its header, its content's identity, its place."""

    header: MigrationHeader
    sha256: str
    size: int
    filename: str  # base name the file has (or had) at its location
    location: Location
    # Path of the file relative to the version location it was found in (usually the bare
    # file name; with recursive_version_locations it may contain sub-folders).
    relative_path: str = ""

    @property
    def revision(self) -> str:
        return self.header.revision


class SkippedFile(NamedTuple):
    """A file that could not be read as a migration, and why (shown as a warning)."""

    path: str
    reason: str


class Unresolved(NamedTuple):
    """A revision that is needed but exists nowhere."""

    revision: str
    needed_by: tuple[str, ...]  # applied (or brought-in) revisions that need it


class Conflict(NamedTuple):
    """One revision id with several different contents; nothing is taken without --prefer."""

    revision: str
    candidates: tuple[Candidate, ...]  # one per distinct sha256 (the closest location of each)
    # A preference that matched several of these contents: the ones it matched (else empty)
    preferred: tuple[Candidate, ...] = ()


class Outcome(enum.Enum):
    NOTHING_TO_DO = "nothing-to-do"
    PLAN = "plan"
    UNRESOLVED = "unresolved"
    CONFLICT = "conflict"


class Plan(NamedTuple):
    """What must be brought into this worktree so Alembic can load every applied revision.

    ``bring`` is ordered parents first. ``unknown_applied`` lists the database's revisions that
    this worktree's files lack (the reason any work is needed at all).
    """

    unknown_applied: tuple[str, ...]
    bring: tuple[Candidate, ...] = ()
    unresolved: tuple[Unresolved, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    # other places holding the same content as a chosen candidate, for the report
    also_found: Mapping[str, tuple[Location, ...]] = MappingProxyType({})

    @property
    def outcome(self) -> Outcome:
        if self.conflicts:
            return Outcome.CONFLICT
        if self.unresolved:
            return Outcome.UNRESOLVED
        if self.bring:
            return Outcome.PLAN
        return Outcome.NOTHING_TO_DO


class ManifestEntry(NamedTuple):
    """One file this tool placed in a worktree."""

    revision: str
    path: str  # absolute path of the copy
    sha256: str
    source: str  # Location.describe() of where it came from
    source_path: str | None
    placed_at: str  # ISO 8601, UTC


class Options(NamedTuple):
    """What the user asked for, beyond the project's configuration."""

    prefer: tuple[str, ...] = ()
    # How the caller's user gives a preference, for hints (``{}`` stands for the value):
    # the command line's option; env.py's line and the Python API pass their own words.
    prefer_wording: str = "--prefer {}"
    dry_run: bool = False
    fetch: bool | None = None  # None: the configuration decides
    from_database: bool = False
    allow_untrusted_source: bool = False
    git_refs: bool | None = None
    lock_timeout: float | None = None  # None: the configuration decides (lock_timeout)
    notify_url: str | None = None  # None: the configuration decides (--notify-url)
    quiet: bool = False  # -q: hide Alembic's INFO lines ("Running upgrade ...") too
    # Only candidates whose id starts with this (``find``): sources may skip the rest early.
    revision_prefix: str | None = None
    # Planning only (check, upgrade): leave out what no plan can use, i.e. copies elsewhere
    # of revisions this worktree has (plan_repair never brings those) and git copies of a
    # content some file holds (the file is closer). find/list/status/graph show everything.
    closest_only: bool = False
    # Listing only (``list`` without -v/--json): build at most this many git candidates per
    # revision, the closest refs; the rest are counted (Inventory.more_places).
    places_per_revision: int | None = None
