"""The repair, end to end: read what the database applied, plan, place, upgrade once.

This module sequences the pure core (planning, graph) and the boundaries (scanning, database,
placement). It returns data; commands and the Python API decide how to show it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from alembic_autocopy import events, gitobjects, placement, planning, records, scanning
from alembic_autocopy.drift import Drift
from alembic_autocopy.errors import AutocopyError, PlacementError, PlanBlocked
from alembic_autocopy.model import Candidate, LocationKind, ManifestEntry, Outcome, Plan
from alembic_autocopy.project import ProjectConfig

ContentReader = Callable[[Candidate], bytes]

# Readers for candidates that are not plain files (git objects, database records) register
# here, keyed by location kind, so placement never needs to know where content comes from.
CONTENT_READERS: dict[LocationKind, ContentReader] = {}
CONTENT_READERS[LocationKind.DATABASE] = records.read_candidate_content

# Extra sources (git objects, database records) register here: each adds candidates to the
# inventory. They run after the file scan, in registration order.
InventoryExtension = Callable[[ProjectConfig, scanning.Inventory, "Options"], None]
INVENTORY_EXTENSIONS: list[InventoryExtension] = []
# Git objects: every branch, remote-tracking branch, tag and stash entry of this repository
# and of the configured clones (read only when options/settings ask for git refs).
INVENTORY_EXTENSIONS.append(gitobjects.extend_inventory)
CONTENT_READERS.update(dict.fromkeys(gitobjects.GIT_KINDS, gitobjects.read_content))


@dataclass(frozen=True)
class Options:
    """What the user asked for, beyond the project's configuration."""

    prefer: tuple[str, ...] = ()
    dry_run: bool = False
    fetch: bool | None = None  # None: the configuration decides
    from_database: bool = False
    allow_untrusted_source: bool = False
    git_refs: bool | None = None
    notify_url: str | None = None  # None: the configuration decides (--notify-url)
    # Only candidates whose id starts with this (``find``): sources may skip the rest early.
    revision_prefix: str | None = None


@dataclass
class Situation:
    """Everything known before acting: sources, the database's heads, the plan."""

    project: ProjectConfig
    worktree_root: Path | None
    inventory: scanning.Inventory
    applied: tuple[str, ...]
    plan: Plan
    database_url: str | None = None
    recorded: records.RecordSet | None = None  # the record table (None: not read)
    # revisions the untrusted record table could have supplied (the message says so)
    held_by_database: tuple[Candidate, ...] = ()
    drift: Drift = field(default_factory=Drift)


@dataclass
class RepairReport:
    situation: Situation
    placed: list[ManifestEntry] = field(default_factory=list)
    target: str | None = None
    applied: list[str] = field(default_factory=list)
    heads_before: tuple[str, ...] = ()
    heads_after: tuple[str, ...] = ()
    upgraded_to_every_head: bool = False
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)  # e.g. a notification not sent


def read_file_content(candidate: Candidate) -> bytes:
    if candidate.location.kind.is_file and candidate.location.path:
        return Path(candidate.location.path).read_bytes()
    reader = CONTENT_READERS.get(candidate.location.kind)
    if reader is None:
        raise AutocopyError(f"cannot read revision {candidate.revision} from "
                            f"{candidate.location.describe()}")
    return reader(candidate)


def inventory(project: ProjectConfig, options: Options) -> scanning.Inventory:
    """Every source, read through the persistent index (``index.open_for`` gives extensions
    the same one), which is saved once at the end if anything was learnt."""
    from alembic_autocopy import index

    cache = index.open_for(project)
    prefix = options.revision_prefix
    found = scanning.scan(project, cache.read_file, cache.committed_blobs, cache.read_folder,
                          wanted=None if prefix is None else (lambda r: r.startswith(prefix)))
    for extend in INVENTORY_EXTENSIONS:
        extend(project, found, options)
    cache.save()
    return found


def assess(project: ProjectConfig, options: Options, applied: Sequence[str] | None = None,
           found: scanning.Inventory | None = None) -> Situation:
    """Scan, read the database (unless ``applied`` is given) and plan. Changes nothing."""
    found = found if found is not None else inventory(project, options)
    url = None
    recorded = None
    if applied is None:
        # The record table is read in the same run of env.py, on the same connection.
        state, recorded = records.read_state(project, records.content_wanted(found.all))
        applied, url = state.heads, state.url
    prefer = _preference(project, options)
    local = [c.header for c in found.local]
    from_database: list[Candidate] = []
    if recorded is not None:
        from_database = records.candidates(recorded, {c.revision for c in found.all})
        found = replace(found, skipped=[*found.skipped, *recorded.refused.values()],
                        notes=[*found.notes, *recorded.problems])
    trusted = records.is_trusted(project, options.from_database)
    if from_database and trusted:
        found = replace(found, elsewhere=[*found.elsewhere, *from_database])
    plan = planning.plan_repair(local, applied, found.elsewhere, prefer)
    held: tuple[Candidate, ...] = ()
    if from_database and not trusted and plan.outcome is Outcome.UNRESOLVED:
        with_records = planning.plan_repair(local, applied, [*found.elsewhere, *from_database],
                                            prefer)
        held = tuple(c for c in with_records.bring if c.location.kind is LocationKind.DATABASE)
    root = scanning.this_worktree(project)
    drift = (records.drift_of(found.local, found.elsewhere, recorded, applied, root)
             if recorded is not None else Drift())
    return Situation(project, root, found, tuple(applied), plan, url, recorded=recorded,
                     held_by_database=held, drift=drift)


def _preference(project: ProjectConfig, options: Options) -> planning.Preference | None:
    if not options.prefer:
        return None
    wanted = []
    for item in options.prefer:
        wanted.append(item)
        expanded = os.path.expanduser(item)
        if os.path.exists(expanded):
            wanted.append(os.path.abspath(expanded))
            wanted.append(os.path.realpath(expanded))
    return planning.matches_preference(wanted)


def ensure_plan_possible(situation: Situation) -> None:
    """Raise PlanBlocked (exit 1) when the plan has unresolved ids or conflicts."""
    from alembic_autocopy import report

    plan = situation.plan
    if plan.outcome in (Outcome.CONFLICT, Outcome.UNRESOLVED):
        message, hint = report.blocked_message(plan), report.blocked_hint(plan)
        message, hint = report.with_record_notes(message, hint, situation)
        if plan.unresolved and situation.inventory.notes:
            # Why a search came up short (offline, git-lfs missing...) explains "found nowhere".
            hint = "; ".join([hint, *situation.inventory.notes]) if hint else "; ".join(
                situation.inventory.notes)
        raise PlanBlocked(message, plan, hint)


@events.recorded  # every repair, done or failed, is logged and notified
def repair(project: ProjectConfig, target: str = "head", options: Options | None = None,
           on_version_apply: Sequence[Callable[..., None]] = (), *, upgrade: bool = True,
           situation: Situation | None = None) -> RepairReport:
    """Bring in every missing revision (whole ancestry), then ONE Alembic upgrade.

    ``upgrade=False`` only places the copies: for a caller (``run``) whose own command
    upgrades next. ``situation``: an assessment already made (saves reading the database
    twice)."""
    from alembic_autocopy import database, graph

    options = options or Options()
    situation = situation if situation is not None else assess(project, options)
    ensure_plan_possible(situation)
    root = situation.worktree_root
    bring = situation.plan.bring
    headers_after = [c.header for c in situation.inventory.local] + [c.header for c in bring]
    if bring:
        graph.validate(headers_after)  # validate everything before writing anything
    placements = placement.destinations(bring, project, root, _target_folder(project))
    report = RepairReport(situation, dry_run=options.dry_run,
                          heads_before=situation.applied)
    local_heads = graph.heads(headers_after) if headers_after else ()
    report.target = _effective_target(target, local_heads)
    report.upgraded_to_every_head = target == "head" and report.target == "heads"
    if options.dry_run:
        return report
    manifest = placement.load_manifest(placement.manifest_path(project, root))
    placement.reconcile(manifest, root)
    if placements:
        report.placed = placement.place(placements, manifest, read_file_content, root)
    if not upgrade:
        return report
    if project.tool.record:  # each applied file kept in the database, same transaction
        on_version_apply = (*on_version_apply, records.Recorder(project.tool.record_table))
    result = database.upgrade(project, report.target, on_version_apply)
    report.applied = result.applied
    report.heads_before = result.before
    report.heads_after = result.after
    return report


def _effective_target(target: str, local_heads: Sequence[str]) -> str:
    """``head`` with several heads here becomes ``heads`` (Alembic would refuse ``head``)."""
    if target == "head" and len(local_heads) > 1:
        return "heads"
    return target


def _target_folder(project: ProjectConfig) -> Callable[[Candidate], Path]:
    """The version location a candidate goes to: the one it was found in, mapped to ours."""
    locations = project.version_locations

    def folder_for(candidate: Candidate) -> Path:
        source_path = candidate.location.path
        if source_path and candidate.location.kind.is_file and len(locations) > 1:
            source_dir = Path(source_path).parent
            for ours in locations:
                if source_dir.name == ours.name and source_dir.parent.name == ours.parent.name:
                    return ours
        return locations[0]

    return folder_for


def clean(project: ProjectConfig, dry_run: bool = False) -> placement.CleanReport:
    root = scanning.this_worktree(project)
    manifest = placement.load_manifest(placement.manifest_path(project, root))
    try:
        return placement.clean(manifest, root, dry_run=dry_run)
    except OSError as error:
        raise PlacementError(f"cannot remove a copy: {error}") from error
