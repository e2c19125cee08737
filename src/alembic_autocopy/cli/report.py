"""Turn domain values into words and JSON. No I/O here: callers print."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from alembic_autocopy.core.model import (
    Candidate,
    Location,
    ManifestEntry,
    MigrationHeader,
    Plan,
    SkippedFile,
)
from alembic_autocopy.core.wording import source_of

if TYPE_CHECKING:
    from alembic_autocopy.core.drift import Drift


def location_json(location: Location) -> dict[str, Any]:
    return {
        "kind": location.kind.value,
        "description": location.describe(),
        "path": location.path,
        "worktree": location.worktree,
        "branch": location.branch,
        "ref": location.ref,
        "commit": location.commit,
        "commit_date": location.commit_date,
        "committed": location.committed,
        "blob": location.blob,
        "detail": location.detail,
    }


def header_json(header: MigrationHeader) -> dict[str, Any]:
    return {
        "revision": header.revision,
        "down_revisions": list(header.down_revisions),
        "branch_labels": list(header.branch_labels),
        "depends_on": list(header.depends_on),
        "message": header.message,
    }


def candidate_json(candidate: Candidate) -> dict[str, Any]:
    return {
        **header_json(candidate.header),
        "sha256": candidate.sha256,
        "size": candidate.size,
        "filename": candidate.filename,
        "location": location_json(candidate.location),
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "outcome": plan.outcome.value,
        "unknown_applied": list(plan.unknown_applied),
        "bring": [candidate_json(c) for c in plan.bring],
        "unresolved": [{"revision": u.revision, "needed_by": list(u.needed_by)}
                       for u in plan.unresolved],
        "conflicts": [{"revision": c.revision,
                       "candidates": [candidate_json(x) for x in c.candidates]}
                      for c in plan.conflicts],
        "also_found": {rev: [location_json(loc) for loc in locs]
                       for rev, locs in plan.also_found.items()},
    }


def manifest_entry_json(entry: ManifestEntry) -> dict[str, Any]:
    return {"revision": entry.revision, "path": entry.path, "sha256": entry.sha256,
            "source": entry.source, "source_path": entry.source_path,
            "placed_at": entry.placed_at}


def skipped_json(skipped: Iterable[SkippedFile]) -> list[dict[str, str]]:
    return [{"path": s.path, "reason": s.reason} for s in skipped]


def skipped_lines(skipped: Iterable[SkippedFile], verbose: bool = False) -> list[str]:
    """``skipped PATH: REASON`` warnings, one per kind of reason (the first file of each,
    with how many more are like it); ``verbose``: one per file."""

    groups: dict[str, list[SkippedFile]] = {}
    for item in skipped:
        kind = item.reason.split(":", 1)[0]
        kind = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`|\d+", "#", kind)
        groups.setdefault(kind, []).append(item)
    lines: list[str] = []
    for members in groups.values():
        shown = members if verbose else members[:1]
        lines.extend(f"skipped {item.path}: {item.reason}" for item in shown)
        if len(members) > len(shown):
            lines[-1] += (f" (and {len(members) - 1} more file(s) skipped for the same "
                          "reason; -v lists them)")
    return lines


def plan_lines(plan: Plan) -> list[str]:
    """One line per revision to bring in, parents first, with where it comes from."""
    lines = []
    for candidate in plan.bring:
        message = f" {candidate.header.message}" if candidate.header.message else ""
        lines.append(f"  {candidate.revision}{message}")
        lines.append(f"      from {source_of(candidate)}")
    return lines


# --- the record table and drift (see records.py, drift.py) ---------------------------------

def drift_lines(drift: Drift | None, diffs: Mapping[str, list[str]] | None = None
                ) -> list[str]:
    """Warnings, one paragraph per drifted revision; ``diffs`` by revision (``--diff``).
    ``drift`` None: nothing was compared (no record table, or an empty one)."""
    lines: list[str] = []
    if drift is None:
        return lines
    for edited in drift.edited:
        lines.append(f"revision {edited.revision}: {edited.path} was edited after it was "
                     f"applied (applied sha256 {edited.recorded_sha256[:12]}, file "
                     f"{edited.file_sha256[:12]}); the change never ran on this database: "
                     "undo it, or put it in a new migration"
                     + ("" if diffs is not None else " (--diff shows it)"))
        if diffs is not None:
            lines.extend(f"    {line}" for line in diffs.get(edited.revision)
                         or ["(the applied content is not available for a diff)"])
    for moved in drift.reparented:
        before = ", ".join(moved.recorded_parents) or "<base>"
        after = ", ".join(moved.file_parents) or "<base>"
        text = (f"revision {moved.revision} was applied on top of {before}; its file "
                f"{moved.path} now says {after}")
        for skipped, parents in zip(moved.skipped, moved.skipped_parents, strict=False):
            since = ", ".join(parents) or "base"
            text += (f"; Alembic counts {skipped} as applied but its upgrade() never ran: "
                     f"make {skipped} revise {moved.revision} instead (and give "
                     f"{moved.revision} back {before}) so `alembic upgrade head` runs it, or "
                     f"run its SQL yourself (`alembic upgrade {since}:{skipped} --sql` "
                     "prints it)")
        lines.append(text)
    by_branch: dict[tuple[str, str | None], list[str]] = {}
    for gone in drift.branch_gone:
        by_branch.setdefault((gone.branch, gone.worktree), []).append(gone.revision)
    for (branch, worktree), revisions in by_branch.items():
        where = f" from worktree {worktree}" if worktree else ""
        lines.append(f"revision(s) {', '.join(revisions)} were applied{where} on branch "
                     f"{branch}, which no longer exists and no branch holds them: candidates "
                     "for cleanup (downgrade them if that work was abandoned)")
    return lines


def drift_json(drift: Drift | None, diffs: Mapping[str, list[str]] | None = None
               ) -> dict[str, Any]:
    if drift is None:
        return {"edited_after_apply": [], "reparented_after_apply": [], "branch_gone": []}
    return {
        "edited_after_apply": [
            {"revision": e.revision, "path": e.path, "applied_sha256": e.recorded_sha256,
             "file_sha256": e.file_sha256, "applied_by": e.record.applied_by,
             "applied_at": e.record.applied_at,
             "diff": None if diffs is None else diffs.get(e.revision)}
            for e in drift.edited],
        "reparented_after_apply": [
            {"revision": m.revision, "path": m.path, "applied_parents": list(m.recorded_parents),
             "file_parents": list(m.file_parents), "never_ran": list(m.skipped)}
            for m in drift.reparented],
        "branch_gone": [
            {"revision": g.revision, "worktree": g.worktree, "branch": g.branch,
             "applied_by": g.applied_by, "applied_at": g.applied_at}
            for g in drift.branch_gone],
    }
