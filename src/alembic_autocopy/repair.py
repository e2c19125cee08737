"""The repair, end to end: read what the database applied, plan, place, upgrade once.

This module sequences the pure core (planning, graph) and the boundaries (scanning, database,
placement). It returns data; commands and the Python API decide how to show it.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from alembic_autocopy.core import planning, wording
from alembic_autocopy.core.errors import (
    AutocopyError,
    MigrationParseError,
    PlacementError,
    PlanBlocked,
)
from alembic_autocopy.core.model import (
    Candidate,
    LocationKind,
    ManifestEntry,
    MigrationHeader,
    Outcome,
    Plan,
    reachable,
)
from alembic_autocopy.core.model import (
    Options as Options,  # the repair's request; defined in the core, named here too
)
from alembic_autocopy.core.wording import id_list
from alembic_autocopy.effects import git
from alembic_autocopy.effects.project import ProjectConfig
from alembic_autocopy.sources import folders, inventory, scanning, trust

# placement is imported where files are placed (`check` and a nothing-to-do `upgrade`
# never are), records and drift where the record table is read.
if TYPE_CHECKING:
    from alembic_autocopy.core.drift import Drift
    from alembic_autocopy.effects import locking, placement
    from alembic_autocopy.sources import records


ContentReader = Callable[[Candidate], bytes]
UNSAFE_NAME = "unsafe name refused"  # how a skipped file with a hostile name is reported

# Readers for candidates that are not plain files (git objects, database records) register
# here, keyed by location kind, so placement never needs to know where content comes from.
CONTENT_READERS: dict[LocationKind, ContentReader] = {}


def _read_database_record(candidate: Candidate) -> bytes:
    from alembic_autocopy.sources import records

    return records.read_candidate_content(candidate)


CONTENT_READERS[LocationKind.DATABASE] = _read_database_record

def _read_git_object(candidate: Candidate) -> bytes:
    from alembic_autocopy.sources import gitobjects

    return gitobjects.read_content(candidate)


CONTENT_READERS.update(dict.fromkeys(
    (LocationKind.BRANCH, LocationKind.REMOTE, LocationKind.TAG, LocationKind.STASH),
    _read_git_object))


class Situation(NamedTuple):
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
    # what the record table says drifted (None: no record to compare with)
    drift: Drift | None = None
    # --prefer naming another version of an id this worktree holds: (theirs, ours)
    refused_preferences: tuple[tuple[Candidate, Candidate], ...] = ()
    # the databases env.py reached (database.Endpoint): what the upgrade lock locks
    endpoints: tuple[Any, ...] = ()


class RepairReport:
    def __init__(self, situation: Situation, heads_before: tuple[str, ...] = (),
                 dry_run: bool = False) -> None:
        self.situation = situation
        self.placed: list[ManifestEntry] = []
        self.target: str | None = None
        self.applied: list[str] = []
        self.heads_before = heads_before
        self.heads_after: tuple[str, ...] = ()
        self.upgraded_to_every_head = False
        self.dry_run = dry_run
        self.warnings: list[str] = []  # e.g. a notification not sent


def read_file_content(candidate: Candidate) -> bytes:
    if candidate.location.kind.is_file and candidate.location.path:
        return Path(candidate.location.path).read_bytes()
    reader = CONTENT_READERS.get(candidate.location.kind)
    if reader is None:
        raise AutocopyError(f"cannot read revision {candidate.revision} from "
                            f"{candidate.location.describe()}")
    return reader(candidate)


class _Read(NamedTuple):
    """What ``assess`` learnt from the database (or was given), before planning."""

    project: ProjectConfig  # with the version folders env.py chose
    found: scanning.Inventory
    applied: Sequence[str]
    url: str | None = None
    recorded: records.RecordSet | None = None
    endpoints: tuple[Any, ...] = ()


def assess(project: ProjectConfig, options: Options, applied: Sequence[str] | None = None,
           found: scanning.Inventory | None = None) -> Situation:
    """Read this worktree, the database (unless ``applied`` is given), and plan. Changes
    nothing.

    The other sources (worktrees, folders, git objects) are read only when the database or
    this worktree needs them (``_needs_other_sources``): with nothing to do, a run costs this
    worktree's folders and one run of env.py. ``found``: an inventory already made, e.g.
    ``inventory.gather()`` with every location for status and graph; an incomplete one
    (``here_only``) is completed here when needed.
    """
    from alembic_autocopy.sources import records

    found = found if found is not None else inventory.gather(project, options,
                                                                   here_only=True)
    read = (_read_database(project, options, found) if applied is None
            else _Read(project, found, applied))
    project, found, recorded = read.project, read.found, read.recorded
    _complete_sources(project, options, found, read.applied, recorded)
    prefer = _preference(project, options)
    local = [c.header for c in found.local]
    # The database returns its rows in no set order: show them in the graph's, every run.
    applied = planning.graph_order(read.applied,
                                   [*local, *(c.header for c in found.elsewhere)])
    from_database: list[Candidate] = []
    if recorded is not None:
        from_database = records.candidates(recorded, {c.revision for c in found.all})
        found = copy.copy(found)  # a new inventory: the caller's keeps what it held
        found.skipped = [*found.skipped, *recorded.refused.values()]
        found.notes = [*found.notes, *recorded.problems]
    trusted = records.is_trusted(project, options.from_database)
    if from_database and trusted:  # (found is the copy made above)
        found.elsewhere = [*found.elsewhere, *from_database]
    plan = planning.plan_repair(local, applied, found.elsewhere, prefer)
    held = (_held_by_database(local, applied, found, from_database, prefer)
            if from_database and not trusted and plan.outcome is Outcome.UNRESOLVED else ())
    root = (found.here.repository if found.here is not None
            else scanning.this_worktree(project))
    drift = (_drift(project, options, found, recorded, applied, root, trusted)
             if recorded is not None else None)
    refused = _refused_preferences(found, prefer) if prefer is not None else ()
    return Situation(project, root, found, tuple(applied), plan, read.url, recorded=recorded,
                     held_by_database=held, drift=drift, endpoints=read.endpoints,
                     refused_preferences=refused)


def _read_database(project: ProjectConfig, options: Options,
                   found: scanning.Inventory) -> _Read:
    """The database's heads and record table, read in one run of env.py on one connection;
    this worktree read again when env.py points Alembic at other folders than the scan."""
    from alembic_autocopy.sources import records

    state, recorded = records.read_state(project, records.content_wanted(found.all))
    chosen = inventory.with_env_locations(project, state.version_locations,
                                state.recursive_version_locations)
    if chosen.version_locations != _scanned_locations(found, project):
        found = inventory.gather(chosen, options, here_only=not found.complete)
    return _Read(chosen, found, state.heads, state.url, recorded, state.endpoints)


def _complete_sources(project: ProjectConfig, options: Options, found: scanning.Inventory,
                      applied: Sequence[str], recorded: records.RecordSet | None) -> None:
    """Read the other sources into ``found`` when they can change the plan: the other
    worktrees and folders first; git objects only if the files leave the plan open (or a
    fetch was asked for: it exists to search git refs)."""
    if found.complete or not _needs_more_sources(found, applied, recorded, options):
        return
    planning_options = options._replace(closest_only=True)
    inventory.search_elsewhere(project, planning_options, found, git_objects=False)
    if _fetch(project, options) or _needs_more_sources(found, applied, recorded, options):
        inventory.search_elsewhere(project, planning_options, found)


def _held_by_database(local: Sequence[MigrationHeader], applied: Sequence[str],
                      found: scanning.Inventory, from_database: Sequence[Candidate],
                      prefer: planning.Preference | None) -> tuple[Candidate, ...]:
    """What the untrusted record table could have supplied to an unresolved plan."""
    with_records = planning.plan_repair(local, applied, [*found.elsewhere, *from_database],
                                        prefer)
    return tuple(c for c in with_records.bring if c.location.kind is LocationKind.DATABASE)


def _drift(project: ProjectConfig, options: Options, found: scanning.Inventory,
           recorded: records.RecordSet, applied: Sequence[str], root: Path | None,
           trusted: bool) -> Drift | None:
    """What the record table says drifted, from every source when a branch looks gone."""
    from alembic_autocopy.sources import records

    drift = records.drift_of(found.local, found.elsewhere, recorded, applied, root)
    if drift is None or not drift.branch_gone or (found.complete and not found.closest_only):
        return drift
    # "Its branch is gone" only holds when no branch or worktree has the revision: a
    # partial inventory cannot say that, so ask every source before reporting it.
    full = inventory.gather(project, options._replace(closest_only=False))
    kept = records.candidates(recorded, {c.revision for c in full.all}) if trusted else []
    return records.drift_of(full.local, [*full.elsewhere, *kept], recorded, applied, root)


def _refused_preferences(found: scanning.Inventory, prefer: planning.Preference
                         ) -> tuple[tuple[Candidate, Candidate], ...]:
    """Copies ``--prefer`` names of ids this worktree already holds, with other contents:
    bringing one in would give Alembic two files for one id (both counted as heads)."""
    ours = {c.revision: c for c in found.local}
    contents = {(c.revision, c.sha256) for c in found.local}
    refused: dict[str, tuple[Candidate, Candidate]] = {}
    for candidate in found.elsewhere:
        if (candidate.revision in ours and candidate.revision not in refused
                and (candidate.revision, candidate.sha256) not in contents
                and prefer(candidate)):
            refused[candidate.revision] = (candidate, ours[candidate.revision])
    return tuple(refused[revision] for revision in sorted(refused))


def duplicate_ids(local: Sequence[Candidate]) -> dict[str, list[Candidate]]:
    """Ids held by several files of this worktree's folders (Alembic warns, then counts
    each as a head: ``upgrade head`` fails)."""
    by_id: dict[str, list[Candidate]] = {}
    for candidate in local:
        by_id.setdefault(candidate.revision, []).append(candidate)
    return {revision: sorted(group, key=lambda c: c.location.path or "")
            for revision, group in sorted(by_id.items()) if len(group) > 1}


def layout_warnings(situation: Situation) -> list[str]:
    """What makes the tool (and Alembic) read other migrations than this worktree's: a
    script location in another worktree (``pkg:path`` importable from there), or version
    folders that hold nothing while the database holds revisions."""

    project, root = situation.project, situation.worktree_root
    warnings: list[str] = []
    if root is not None and not _inside(project.script_location, root):
        owner = git.locate(project.script_location)[0] if project.script_location.exists() \
            else None
        whose = f"worktree {owner}" if owner is not None else "no worktree of this repository"
        warnings.append(
            f"script_location resolves to {project.script_location}, which belongs to {whose}, "
            f"not to this worktree ({root}): Alembic and this tool read the migrations there; "
            "install the package from this worktree (`pip install -e .` here) or set "
            "script_location to a path (e.g. %(here)s/...) or add prepend_sys_path = .")
    if situation.applied and not situation.inventory.local:
        folders = ", ".join(os.fspath(folder) for folder in project.version_locations)
        warnings.append(
            f"the database holds revisions ({id_list(situation.applied)}) but this "
            f"worktree's version folders ({folders}) hold no migration: check script_location "
            "and version_locations (env.py may choose other folders; version_locations under "
            "[tool.alembic-autocopy] overrides)")
    return warnings


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


def _unreadable_clash(situation: Situation) -> AutocopyError | None:
    """A revision the plan brings in that an unreadable file of this worktree may already
    hold (its text names the id): never risk a second file for one id."""
    if not situation.plan.bring or situation.inventory.here is None:
        return None
    folders = tuple(os.fspath(folder) + os.sep
                    for folder, _ in situation.inventory.here.version_dirs)
    for skipped in situation.inventory.skipped:
        if not skipped.path.startswith(folders):
            continue
        try:
            content = Path(skipped.path).read_bytes()
        except OSError:
            continue
        for candidate in situation.plan.bring:
            if candidate.revision.encode() in content:
                return AutocopyError(
                    f"revision {candidate.revision} is needed, but {skipped.path} here, which "
                    f"cannot be read ({skipped.reason}), names it: another file for the "
                    "same id would break Alembic; refused, nothing was changed",
                    hint=f"make {skipped.path} readable (or remove it), then run again")
    return None


def blocking_problem(situation: Situation) -> AutocopyError | None:
    """What makes this worktree unusable whatever the plan: one id in two of its files,
    or a --prefer that would create that. None when there is none."""
    if situation.refused_preferences:
        parts = [f"--prefer names {wording.source_of(theirs)}, another version of revision "
                 f"{theirs.revision}, which this worktree already has "
                 f"({ours.location.path})" for theirs, ours in situation.refused_preferences]
        return AutocopyError(
            "; ".join(parts) + "; a second file for one id makes Alembic count both as "
            "heads: refused, nothing was changed",
            hint="run again without --prefer; to use that version, replace this worktree's "
                 "file with git (e.g. `git checkout REF -- PATH`)")
    clash = _unreadable_clash(situation)
    if clash is not None:
        return clash
    duplicates = duplicate_ids(situation.inventory.local)
    if not duplicates:
        return None
    from alembic_autocopy.effects import placement  # only here: `check` never imports it otherwise

    placed = placement.open_manifest(situation.project, situation.worktree_root).by_path()
    parts = []
    for revision, group in duplicates.items():
        files = []
        for candidate in group:
            path = candidate.location.path or "?"
            entry = placed.get(path)
            files.append(f"{path} (a copy alembic-autocopy placed from {entry.source})"
                         if entry is not None else path)
        parts.append(f"revision {revision} is in {len(group)} files here: {', '.join(files)}")
    tool_copies = any(c.location.path in placed for g in duplicates.values() for c in g)
    hint = ("`alembic-autocopy clean` removes the copies alembic-autocopy placed; "
            if tool_copies else "") + "keep one file per revision id (delete or rename the " \
        "other), then run again"
    return AutocopyError("; ".join(parts) + "; Alembic counts each as a head, so "
                         "`alembic upgrade head` fails", hint=hint)


def _scanned_locations(found: scanning.Inventory,
                       project: ProjectConfig) -> tuple[Path, ...]:
    if found.here is None:
        return project.version_locations
    return tuple(folder for folder, _ in found.here.version_dirs)


def _needs_more_sources(found: scanning.Inventory, applied: Sequence[str],
                        recorded: records.RecordSet | None, options: Options) -> bool:
    """Can a source not read yet change the plan or the drift report?

    The plan over what was read is final when it has nothing to do, or when files on disk
    agree on every revision it brings: a copy elsewhere with another content would lose to
    them (``planning._choose``), unless ``--prefer`` may pick it. Anything else (an id found
    nowhere yet, a missing parent, a conflict) needs more sources. So does the drift report
    when the applied ancestry, following the parents the record table says really ran,
    reaches a revision nothing read so far holds (one re-pointed after it was applied).
    """
    local = [candidate.header for candidate in found.local]
    outcome = planning.plan_repair(local, applied, found.elsewhere).outcome
    final = not options.prefer and outcome in (Outcome.NOTHING_TO_DO, Outcome.PLAN)
    if not final:
        return True
    if recorded is None or not recorded.records:
        return False
    from alembic_autocopy.core.drift import applied_revisions

    headers = [*local, *(candidate.header for candidate in found.elsewhere)]
    known = {header.revision for header in headers}
    known.update(label for header in headers for label in header.branch_labels)
    parents = {revision: record.parents for revision, record in recorded.records.items()}
    return not applied_revisions(applied, parents, headers) <= known


def _fetch(project: ProjectConfig, options: Options) -> bool:
    return options.fetch if options.fetch is not None else project.tool.fetch


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


def with_record_notes(message: str, hint: str, situation: Situation) -> tuple[str, str]:
    """Add what the record table could tell to a blocked plan's message and hint."""
    parts, hints = [message], [hint] if hint else []
    held = situation.held_by_database
    recorded = situation.recorded
    if held and recorded is not None:
        ids = ", ".join(c.revision for c in held)
        parts.append(f"the database holds {ids} in its record table {recorded.name} "
                     f"({held[-1].location.detail}) but is not trusted")
        hints.insert(0, wording.TRUST_HINT)
    if recorded is not None:
        unresolved = {u.revision for u in situation.plan.unresolved}
        for revision in sorted(unresolved & recorded.refused.keys()):
            refusal = recorded.refused[revision]
            parts.append(f"the {refusal.path} was refused: {refusal.reason}")
    return "; ".join(parts), "; ".join(hints)


def ensure_plan_possible(situation: Situation, options: Options) -> None:
    """Raise PlanBlocked (exit 1) when the plan has unresolved ids or conflicts; it names a
    preference in the words of ``options.prefer_wording``."""

    problem = blocking_problem(situation)
    if problem is not None:
        raise problem
    plan = situation.plan
    trust.check_unresolved((u.revision for u in plan.unresolved),
                           situation.inventory.untrusted)
    if plan.outcome in (Outcome.CONFLICT, Outcome.UNRESOLVED):
        message = wording.blocked_message(plan, wording.given_preference(options))
        hint = wording.blocked_hint(plan, options.prefer_wording)
        message, hint = with_record_notes(message, hint, situation)
        # Why a search came up short (offline, git-lfs missing, a file under a name that
        # would write outside the versions folder...) explains "found nowhere".
        refused = [f"{s.path}: {s.reason}" for s in situation.inventory.skipped
                   if s.reason.startswith(UNSAFE_NAME)]
        why = (*situation.inventory.notes, *refused) if plan.unresolved else ()
        raise PlanBlocked(message, plan, hint, why)


def repair(project: ProjectConfig, target: str = "head", options: Options | None = None,
           on_version_apply: Sequence[Callable[..., None]] = (), *, upgrade: bool = True,
           situation: Situation | None = None,
           notify: Callable[[str], None] | None = None,
           before_upgrade: Callable[[RepairReport], None] | None = None) -> RepairReport:
    """Bring in every missing revision (whole ancestry), then ONE Alembic upgrade.

    ``upgrade=False`` only places the copies: for a caller (``run``) whose own command
    upgrades next. ``situation``: an assessment already made (saves reading the database
    twice when there is nothing to do). ``notify``: where "waiting for another upgrade..."
    goes (default: stderr). ``before_upgrade(report)``: called once the copies are placed,
    right before Alembic runs (a command prints its plan there, so that it comes before
    Alembic's own lines).

    Order: scan, read the heads (to learn which database env.py reaches), take the database
    lock then the worktree lock, look at this worktree's folders and read the heads AGAIN
    (another process may have done the work meanwhile), plan, place, upgrade, release. A
    run with nothing to do takes no lock.
    """
    from alembic_autocopy.effects import locking

    options = options or Options()
    situation = situation if situation is not None else assess(project, options)
    project = situation.project  # with the version folders env.py chose
    if options.dry_run:
        return _carry_out(project, target, options, on_version_apply, upgrade, situation,
                          before_upgrade)
    if _already_current(situation, target):  # nothing to place or apply: no preflight
        ensure_plan_possible(situation, options)  # e.g. two files here for one id
        locking.remove_stale_lock_files(situation.endpoints)
        report = _new_report(project, target, options, situation, current=True)
        report.heads_after = situation.applied
        return report
    from alembic_autocopy.effects import placement  # not before: nothing to do needs none

    waiting = locking.Waiting(_lock_timeout(project, options), notify or locking.print_notice)
    manifest_file = placement.manifest_path(project, situation.worktree_root)
    with (locking.database_lock(situation.endpoints, waiting) as held,
          locking.worktree_lock(locking.worktree_lock_path(manifest_file), waiting)):
        # Another run may have changed this worktree (copies placed) and the database
        # (revisions applied) since the scan: look again before planning.
        scanning.refresh_here(project, situation.inventory, situation.worktree_root)
        situation = assess(project, options, found=situation.inventory)
        situation.inventory.notes.extend(held.notes)
        held.verify()  # e.g. the lock connection ended while env.py ran
        return _carry_out(project, target, options, on_version_apply, upgrade, situation,
                          before_upgrade, held)


def bring_in(project: ProjectConfig, applied: Sequence[str], options: Options | None = None,
             target: str = "head", *,
             notify: Callable[[str], None] | None = None) -> RepairReport:
    """Place what the database's ``applied`` heads need; no env.py run, no upgrade.

    For env.py's integration (``heal``): the caller read ``applied`` on env.py's own
    connection, holds the database lock, and lets Alembic go on with its own command.
    The same planner, placement and worktree lock as ``repair``.
    """
    from alembic_autocopy.effects import locking, placement

    options = options or Options()
    situation = assess(project, options, applied=applied)
    waiting = locking.Waiting(_lock_timeout(project, options), notify or locking.print_notice)
    manifest_file = placement.manifest_path(project, situation.worktree_root)
    with locking.worktree_lock(locking.worktree_lock_path(manifest_file), waiting):
        scanning.refresh_here(project, situation.inventory, situation.worktree_root)
        situation = assess(project, options, applied=applied, found=situation.inventory)
        return _carry_out(project, target, options, (), False, situation)


def _lock_timeout(project: ProjectConfig, options: Options) -> float:
    if options.lock_timeout is not None:
        return options.lock_timeout
    return project.tool.lock_timeout


def _already_current(situation: Situation, target: str) -> bool:
    """Nothing to bring and the database already at this worktree's heads: no lock needed
    (the common start of a dev server). Anything else goes through the lock.

    This worktree's heads come from the headers already parsed (``revisions.heads``: set
    logic on a plain graph, Alembic's ``RevisionMap`` only for labels, dependencies and
    other graphs whose heads need its rules)."""
    from alembic_autocopy.core import revisions

    if situation.plan.outcome is not Outcome.NOTHING_TO_DO or target not in ("head", "heads"):
        return False
    if not situation.applied or not situation.inventory.local:
        return False
    local = [c.header for c in situation.inventory.local]
    try:
        local_heads = revisions.heads(local)
    except Exception:  # an invalid local graph: let the normal path report it
        return False
    return set(local_heads) == set(situation.applied)


def _carry_out(project: ProjectConfig, target: str, options: Options,
               on_version_apply: Sequence[Callable[..., None]], upgrade: bool,
               situation: Situation,
               before_upgrade: Callable[[RepairReport], None] | None = None,
               held: locking.HeldLocks | None = None) -> RepairReport:
    """Check, place the copies, then (``upgrade``) the one Alembic upgrade."""
    placements = preflight(project, situation, options, read_contents=options.dry_run)
    current = not options.dry_run and _already_current(situation, target)
    report = _new_report(project, target, options, situation, current)
    if options.dry_run:
        return report
    if current:
        report.heads_after = situation.applied
        return report
    _place_copies(project, situation, placements, report)
    if upgrade:
        _upgrade(project, options, on_version_apply, report, before_upgrade, held)
    return report


def _new_report(project: ProjectConfig, target: str, options: Options, situation: Situation,
                current: bool) -> RepairReport:
    """The report before anything is done: the target (``head`` may become ``heads``)."""
    from alembic_autocopy.core import revisions

    report = RepairReport(situation, dry_run=options.dry_run, heads_before=situation.applied)
    bring = situation.plan.bring
    if current:  # this worktree's heads are the database's: nothing brought in
        local_heads: Sequence[str] = situation.applied
    else:
        # The same headers preflight validated: its RevisionMap answers (no second one).
        headers_after = [*(c.header for c in situation.inventory.local),
                         *(c.header for c in bring)]
        local_heads = revisions.heads(headers_after) if headers_after else ()
    copies: set[str] = {c.revision for c in bring}
    if target == "head" and len(local_heads) > 1:  # only then can copies change the target
        from alembic_autocopy.effects import placement

        manifest = placement.open_manifest(project, situation.worktree_root)
        still, _merged = placement.still_copies(manifest, situation.worktree_root)
        copies |= {entry.revision for entry in still}
    report.target = effective_target(target, local_heads, copies)
    report.upgraded_to_every_head = target == "head" and report.target == "heads"
    return report


def _place_copies(project: ProjectConfig, situation: Situation,
                  placements: Sequence[placement.Placement], report: RepairReport) -> None:
    """Tidy what a killed run left, keep the manifest true, then place the copies."""
    from alembic_autocopy.effects import placement

    root = situation.worktree_root
    manifest_file = placement.manifest_path(project, root)
    manifest = placement.open_manifest(project, root)
    scratch = placement.scratch_folder(manifest_file)
    placement.remove_stale_temporaries(
        {scratch, manifest_file.parent, *_copy_folders(project, placements)})
    try:
        kept = placement.reconcile(manifest, root)
    except OSError as error:
        raise placement.fault_error(error, manifest_file.parent) from error
    if placements:
        # place() keeps the ignore files in step and refuses a copy it cannot hide, so the
        # copies left unhidden are still those reconcile() found
        report.placed = placement.place(placements, manifest, read_file_content, root,
                                        scratch if root is not None else None)
    report.warnings.extend(placement.unhidden_warning(kept.unhidden))


def _upgrade(project: ProjectConfig, options: Options,
             on_version_apply: Sequence[Callable[..., None]], report: RepairReport,
             before_upgrade: Callable[[RepairReport], None] | None,
             held: locking.HeldLocks | None) -> None:
    """The one Alembic upgrade, each applied file kept in the record table if asked."""
    from alembic_autocopy.effects import database

    situation = report.situation
    if project.tool.record:  # each applied file kept in the database, same transaction
        from alembic_autocopy.sources import records

        # Only once env.py has the integration line, which keeps the table out of
        # autogenerate: a project without it never sees the table (opt-in, issue 12).
        if records.env_py_records(project):
            on_version_apply = (*on_version_apply,
                                records.Recorder(project.tool.record_table))
    if before_upgrade is not None:
        before_upgrade(report)
    assert report.target is not None
    with database.quiet_alembic_logs() if options.quiet else contextlib.nullcontext():
        result = database.upgrade(project, report.target, on_version_apply, held)
    report.applied = result.applied
    known = [*(c.header for c in situation.inventory.local),
             *(c.header for c in situation.plan.bring),
             *(c.header for c in situation.inventory.elsewhere)]
    report.heads_before = planning.graph_order(result.before, known)
    report.heads_after = planning.graph_order(result.after, known)


def preflight(project: ProjectConfig, situation: Situation, options: Options, *,
              read_contents: bool = True) -> list[placement.Placement]:
    """Every check ``upgrade`` makes before writing, in the same words: the plan is possible,
    the final graph is valid, the copies come from trusted places, each destination is free
    and its folder usable, and (``read_contents``) each content is the one planned and
    compiles. ``check`` and ``upgrade --dry-run`` call it so that they refuse what
    ``upgrade`` would refuse. Raises the AutocopyError ``upgrade`` would raise."""
    from alembic_autocopy.core import revisions
    from alembic_autocopy.effects import placement

    ensure_plan_possible(situation, options)
    bring = situation.plan.bring
    if bring:
        revisions.validate([c.header for c in situation.inventory.local]
                       + [c.header for c in bring])
        if not inventory.allows_untrusted(project, options):
            trust.check_copies(bring)  # code the upgrade will run: judged right before
    placements = placement.destinations(bring, project, situation.worktree_root,
                                        _target_folder(project))
    if read_contents:
        placement.read_verified(placements, read_file_content)
    return placements


def _copy_folders(project: ProjectConfig,
                  placements: Sequence[placement.Placement]) -> set[Path]:
    """Folders a killed run may have left temporary files in (bytecode caches included:
    ``placement.write_bytecode``)."""
    folders = {*project.version_locations, *(p.destination.parent for p in placements)}
    return folders | {folder / "__pycache__" for folder in folders}


def effective_target(target: str, local_heads: Sequence[str], copies: Collection[str]) -> str:
    """``head`` becomes ``heads`` when the second head was brought in: at most one head is
    the worktree's own (not a copy this tool placed). Several heads of its own are a real
    "Multiple head revisions" that Alembic reports as usual."""
    own = [head for head in local_heads if head not in copies]
    if target == "head" and len(local_heads) > 1 and len(own) <= 1:
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


def clean(project: ProjectConfig, dry_run: bool = False,
          remove_needed: bool = False) -> placement.CleanReport:
    """Remove the copies this tool placed here. Without ``remove_needed`` (``--all``), a
    copy the database still needs (its revision is applied, or an ancestor of one) and that
    no other file here provides is kept. ``dry_run`` changes no byte (no lock file, no
    manifest or .gitignore rewrite)."""
    from alembic_autocopy.effects import locking, placement

    root = scanning.this_worktree(project)
    manifest_file = placement.manifest_path(project, root)
    needed = None if remove_needed else _needed_by_database(project)
    if dry_run:
        manifest = placement.open_manifest(project, root)
        return placement.clean(manifest, root, dry_run=True, needed=needed)
    waiting = locking.Waiting(project.tool.lock_timeout)
    with locking.worktree_lock(locking.worktree_lock_path(manifest_file), waiting):
        manifest = placement.open_manifest(project, root)
        try:
            return placement.clean(manifest, root, dry_run=dry_run, needed=needed)
        except OSError as error:
            raise PlacementError(f"cannot remove a copy: {error}",
                                 hint="fix the cause, then run `alembic-autocopy clean` "
                                      "again") from error


def _needed_by_database(project: ProjectConfig) -> Callable[[ManifestEntry], bool]:
    """Which copies the database still needs: revisions applied there (and their
    ancestors, following this worktree's files) that no file here other than a copy holds."""
    from alembic_autocopy.effects import database

    try:
        heads = database.read_state(project).heads
    except AutocopyError as error:
        raise AutocopyError(
            f"cannot tell which copies the database still needs: {error.message}",
            hint="make the database reachable, or run `alembic-autocopy clean --all` to "
                 "remove every unchanged copy anyway") from error
    parents: dict[str, tuple[str, ...]] = {}
    providers: dict[str, set[str]] = {}
    skipped: list[Any] = []
    for location in project.version_locations:
        for path in folders.iter_migration_paths(location,
                                                  project.recursive_version_locations,
                                                  skipped):
            try:
                header = folders.read_migration_file(path, project.tool.max_file_bytes).header
            except (OSError, MigrationParseError):
                continue
            parents[header.revision] = header.needs
            providers.setdefault(header.revision, set()).add(os.path.realpath(path))
    applied = reachable(heads, parents)

    def needed(entry: ManifestEntry) -> bool:
        others = providers.get(entry.revision, set()) - {os.path.realpath(entry.path)}
        return entry.revision in applied and not others

    return needed
