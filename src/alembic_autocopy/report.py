"""Turn domain values into words and JSON. No I/O here: callers print."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from alembic_autocopy.model import (
    Candidate,
    Conflict,
    Location,
    ManifestEntry,
    MigrationHeader,
    Plan,
    SkippedFile,
    Unresolved,
)


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


def source_of(candidate: Candidate) -> str:
    location = candidate.location
    where = location.describe()
    if location.path and location.kind.is_file:
        return f"{where}: {location.path}"
    if location.path:
        return f"{where}: {location.path}" + (f" @ {location.commit[:10]}"
                                               if location.commit else "")
    return where


def plan_lines(plan: Plan) -> list[str]:
    """One line per revision to bring in, parents first, with where it comes from."""
    lines = []
    for candidate in plan.bring:
        message = f" {candidate.header.message}" if candidate.header.message else ""
        lines.append(f"  {candidate.revision}{message}")
        lines.append(f"      from {source_of(candidate)}")
    return lines


def _needed_by(unresolved: Unresolved) -> str:
    names = ["the database" if n == "database" else n for n in unresolved.needed_by]
    return ", ".join(names) or "?"


def blocked_message(plan: Plan) -> str:
    parts = []
    if plan.conflicts:
        parts.append("; ".join(conflict_sentence(c) for c in plan.conflicts))
    if plan.unresolved:
        ids = ", ".join(f"{u.revision} (needed by {_needed_by(u)})" for u in plan.unresolved)
        parts.append(f"revision(s) found nowhere: {ids}")
    return "cannot repair: " + "; ".join(parts) + "; nothing was changed"


def conflict_sentence(conflict: Conflict) -> str:
    places = ", ".join(f"{source_of(c)} [sha256 {c.sha256[:12]}]" for c in conflict.candidates)
    return f"revision {conflict.revision} exists with different contents: {places}"


def blocked_hint(plan: Plan) -> str:
    hints = []
    if plan.conflicts:
        hints.append("choose one with --prefer PATH_OR_WORKTREE_OR_BRANCH")
    if plan.unresolved:
        hints.append("fetch or check out the branch that has it, add the folder that has it "
                     "to [tool.alembic-autocopy] search, or run "
                     "`alembic-autocopy find REV` to look again")
    return "; ".join(hints)
