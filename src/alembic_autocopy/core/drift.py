"""Drift between what the database applied and the files here. Pure: data in, data out.

The record table keeps, for each applied revision, the exact content and parents that ran.
Compared with this worktree's files, that shows three things Alembic cannot see:

* a file edited after it was applied (its sha256 differs from the recorded one): the change
  never ran and never will, since Alembic only looks at the version table;
* a revision re-pointed to a new parent after it was applied: Alembic then counts the new
  parent as applied too (it is an ancestor of an applied revision) and never runs its
  ``upgrade()``, silently;
* an applied revision recorded by a worktree of this machine whose branch no longer exists:
  its file probably went with the branch (a candidate for cleanup, reported only).

Only applied revisions are compared: a record left behind by a downgrade that did not go
through the recording callback says nothing about the current schema.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import NamedTuple

from alembic_autocopy.core.model import Candidate, MigrationHeader, reachable


class Record(NamedTuple):
    """One row of the record table: a revision as it was applied."""

    revision: str
    parents: tuple[str, ...]  # down_revision(s) of the applied file
    sha256: str
    filename: str
    applied_at: str | None = None  # ISO 8601, UTC
    applied_by: str | None = None  # user@host
    worktree: str | None = None
    branch: str | None = None
    commit: str | None = None
    content: bytes | None = None  # only when fetched, and only once verified
    header: MigrationHeader | None = None  # parsed from ``content``

    @property
    def provenance(self) -> str:
        """'recorded by alice@laptop at 2026-11-20T10:00:00+00:00 in ~/Proj-a (feature-a)'"""
        by = self.applied_by or "unknown"
        text = f"recorded by {by} at {self.applied_at}" if self.applied_at else (
            f"backfilled by {by}")
        if self.worktree:
            text += f" in {self.worktree}"
            if self.branch:
                text += f" ({self.branch})"
        return text


class EditedAfterApply(NamedTuple):
    revision: str
    path: str
    recorded_sha256: str
    file_sha256: str
    recorded_content: bytes | None
    record: Record


class ReparentedAfterApply(NamedTuple):
    revision: str
    path: str
    recorded_parents: tuple[str, ...]
    file_parents: tuple[str, ...]
    # new parents whose upgrade() never ran: Alembic counts them as applied all the same
    skipped: tuple[str, ...]
    skipped_parents: tuple[tuple[str, ...], ...] = ()  # each skipped one's own parents


class BranchGone(NamedTuple):
    revision: str
    worktree: str | None
    branch: str
    applied_by: str | None
    applied_at: str | None


class Drift(NamedTuple):
    edited: tuple[EditedAfterApply, ...] = ()
    reparented: tuple[ReparentedAfterApply, ...] = ()
    branch_gone: tuple[BranchGone, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.edited or self.reparented or self.branch_gone)


def applied_revisions(heads: Iterable[str], recorded_parents: Mapping[str, Sequence[str]],
                      headers: Iterable[MigrationHeader]) -> set[str]:
    """Every revision at or below ``heads``, following the parents that were really applied:
    the recorded ones where a record exists, else the file's (parents and depends_on)."""
    needs: dict[str, tuple[str, ...]] = {}
    depends_on: dict[str, tuple[str, ...]] = {}
    for header in headers:
        needs.setdefault(header.revision, header.needs)
        depends_on.setdefault(header.revision, header.depends_on)
    for revision, parents in recorded_parents.items():
        needs[revision] = (*parents, *depends_on.get(revision, ()))
    return reachable(heads, needs)


def detect(local: Sequence[Candidate], records: Iterable[Record], heads: Iterable[str],
           headers: Iterable[MigrationHeader], existing_branches: set[str] | None = None,
           this_host: str | None = None, committed: Collection[str] = ()) -> Drift:
    """Compare this worktree's files (``local``) with the records of applied revisions.

    ``headers``: every known revision (for the applied set). ``existing_branches``: local
    branch names of this repository, None when unknown (no branch check then).
    ``this_host``: records made on another machine name branches of another clone: skipped.
    ``committed``: revisions some branch holds (not abandoned, whoever applied them).
    """
    by_revision = {record.revision: record for record in records}
    header_list = list(headers)
    applied = applied_revisions(heads, {r: rec.parents for r, rec in by_revision.items()},
                                header_list)
    compared = [(candidate, by_revision[candidate.revision])
                for candidate in sorted(local, key=lambda c: c.revision)
                if candidate.revision in by_revision and candidate.revision in applied]
    edited = [_edited(candidate, record) for candidate, record in compared
              if record.sha256 != candidate.sha256]
    parents_of = _first_parents(header_list)
    reparented = [_reparented(candidate, record, applied, parents_of)
                  for candidate, record in compared
                  if set(candidate.header.down_revisions) != set(record.parents)]
    gone: list[BranchGone] = []
    if existing_branches is not None:
        gone = _branches_gone(by_revision.values(), applied, existing_branches, this_host,
                              committed)
    return Drift(tuple(edited), tuple(reparented), tuple(gone))


def _path_of(candidate: Candidate) -> str:
    return candidate.location.path or candidate.filename


def _edited(candidate: Candidate, record: Record) -> EditedAfterApply:
    return EditedAfterApply(candidate.revision, _path_of(candidate), record.sha256,
                            candidate.sha256, record.content, record)


def _first_parents(headers: Iterable[MigrationHeader]) -> dict[str, tuple[str, ...]]:
    """Each revision's down_revisions; the first header of a revision wins: this worktree's
    (as in applied_revisions)."""
    parents_of: dict[str, tuple[str, ...]] = {}
    for header in headers:
        parents_of.setdefault(header.revision, header.down_revisions)
    return parents_of


def _reparented(candidate: Candidate, record: Record, applied: set[str],
                parents_of: Mapping[str, tuple[str, ...]]) -> ReparentedAfterApply:
    file_parents = candidate.header.down_revisions
    new = [p for p in file_parents if p not in record.parents]
    skipped = tuple(p for p in new if p not in applied)
    return ReparentedAfterApply(candidate.revision, _path_of(candidate), record.parents,
                                file_parents, skipped,
                                tuple(parents_of.get(p, ()) for p in skipped))


def _branches_gone(records: Iterable[Record], applied: set[str], existing_branches: set[str],
                   this_host: str | None, committed: Collection[str]) -> list[BranchGone]:
    """Applied revisions recorded on this machine on a branch that no longer exists, and that
    no branch holds."""
    return [BranchGone(record.revision, record.worktree, record.branch, record.applied_by,
                       record.applied_at)
            for record in sorted(records, key=lambda r: r.revision)
            if (record.revision in applied and record.branch
                and record.revision not in committed
                and record.branch not in existing_branches
                and _host(record.applied_by) == this_host)]


def _host(applied_by: str | None) -> str | None:
    if not applied_by or "@" not in applied_by:
        return None
    return applied_by.rpartition("@")[2]


def unified_diff(item: EditedAfterApply, current: bytes) -> list[str]:
    """The change from the applied content to the file's current content, as diff lines."""

    if item.recorded_content is None:
        return []
    before = item.recorded_content.decode("utf-8", "replace").splitlines(keepends=True)
    after = current.decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(before, after, fromfile=f"applied/{item.revision}",
                                 tofile=item.path)
    return [line.rstrip("\n") for line in lines]
