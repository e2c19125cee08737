"""Small pieces of output shared by several commands."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable

from alembic_autocopy.cli.output import Output
from alembic_autocopy.cli.report import skipped_lines
from alembic_autocopy.core.errors import MigrationParseError
from alembic_autocopy.core.graphfaults import graph_faults
from alembic_autocopy.core.model import Candidate, Plan, SkippedFile
from alembic_autocopy.effects.project import ProjectConfig
from alembic_autocopy.sources import index
from alembic_autocopy.sources.scanning import Inventory

# Imported inside functions, as each saves >= 5 ms where skipped: the parser only to explain a
# broken file.


def show_inventory_warnings(inventory: Inventory, out: Output,
                            every_id_known: bool = True, *,
                            project: ProjectConfig | None = None,
                            plan: Plan | None = None) -> None:
    """What was skipped, notes, and the faults of the revision graph (a cycle, a parent in
    no source, an id in two files of a source: see graphfaults). This worktree's own skipped
    files are each named (Alembic will stumble on each of them); elsewhere (old refs, other
    worktrees) one line per kind of reason is enough, ``-v`` names each file.
    ``every_id_known``: False when the search kept only some revisions (``find``). With
    ``project``: also the files found elsewhere that do not compile and that ``plan`` does
    not need (a needed one is refused by ``upgrade``'s own check)."""

    here = tuple(os.fspath(folder) + os.sep for folder, _ in inventory.here.version_dirs
                 ) if inventory.here is not None else ()
    skipped = list(inventory.skipped)
    if project is not None:
        skipped += unloadable_elsewhere(project, inventory, plan)
    own = [item for item in skipped if item.path.startswith(here)]
    elsewhere = [item for item in skipped if not item.path.startswith(here)]
    for line in [*skipped_lines(own, verbose=True), *skipped_lines(elsewhere, out.verbose)]:
        out.warn(line)
    for note in inventory.notes:
        out.warn(note)
    for fault in graph_faults(inventory.all, every_id_known=every_id_known):
        out.warn(fault)
    for path, reason in inventory.loaded_by_alembic.items():
        out.detail(f"read through Alembic's own loading (as `alembic` does): {path} ({reason})")
    out.detail(search_summary(inventory))


def search_summary(inventory: Inventory) -> str:
    """What was searched and what the index saved (``-v``): why a run was fast or slow."""
    if inventory.pending is not None:  # the other sources were never listed
        where = "this worktree only (nothing was needed from elsewhere)"
    else:
        where = f"this worktree and {len(inventory.searched)} other worktree(s) or folder(s)"
        where += (f", {inventory.refs_searched} git ref(s)" if inventory.refs_searched is not None
                  else ", no git ref")
    stats = inventory.index_stats
    if stats is None:
        return f"searched {where}"
    return (f"searched {where}; index: {stats.hits:,} file(s) unchanged, {stats.reads:,} "
            f"read, {stats.parses:,} parsed")


def unloadable_elsewhere(project: ProjectConfig, inventory: Inventory,
                         plan: Plan | None) -> list[SkippedFile]:
    """Files read in other places that would not load, other than those ``plan`` brings.
    Only what was read elsewhere: nothing at all on a run with nothing to do."""
    needed = {c.revision for c in plan.bring} if plan is not None else set()
    files = [c for c in inventory.elsewhere
             if c.location.kind.is_file and c.location.path and c.revision not in needed]
    if not files:
        return []
    verdicts = broken_reasons(project, files)
    return [SkippedFile(str(c.location.path), reason) for c in files
            if (reason := verdicts.get(c.sha256))]


def broken_reasons(project: ProjectConfig, candidates: Iterable[Candidate]
                   ) -> dict[str, str | None]:
    """Why each content (by sha256) of the files among ``candidates`` would not load (None:
    it compiles). The scan reads headers only; ``find`` and ``list`` compile what they show,
    so that a file broken below its header is marked instead of shown as a valid revision
    (the check ``upgrade`` makes before copying). Verdicts are kept by content, per Python
    version, beside the index: a warm ``list`` compiles nothing."""


    path = index.index_path(project).parent / (
        f"compiled-{sys.version_info.major}.{sys.version_info.minor}.json")
    try:
        known: dict[str, str | None] = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    verdicts: dict[str, str | None] = {}
    learnt = False
    for candidate in candidates:
        sha = candidate.sha256
        if sha in verdicts or not (candidate.location.kind.is_file and candidate.location.path):
            continue
        if sha in known:
            verdicts[sha] = known[sha]
            continue
        reason = _compile_error(candidate)
        if reason is not None and reason.startswith("!"):
            continue  # unreadable now: no verdict on its content
        verdicts[sha] = known[sha] = reason
        learnt = True
    if learnt and not os.environ.get("ALEMBIC_AUTOCOPY_NO_INDEX"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(known), encoding="utf-8")
            os.replace(temporary, path)
        except OSError:
            pass  # compiled again next time, nothing worse
    return verdicts


def _compile_error(candidate: Candidate) -> str | None:
    """The compile error of the file's content (None: it compiles; "!...": unreadable)."""
    from alembic_autocopy.core.parsing import parse_migration, sha256_hex

    assert candidate.location.path is not None
    try:
        with open(candidate.location.path, "rb") as handle:
            content = handle.read(candidate.size + 1)
    except OSError as error:
        return f"!{error.strerror or error}"
    if sha256_hex(content) != candidate.sha256:
        return "!changed"
    try:
        parse_migration(content, max_bytes=max(len(content), 1), check_syntax=True)
    except MigrationParseError as error:
        return str(error)
    return None
