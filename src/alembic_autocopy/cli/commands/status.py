"""``alembic-autocopy status``: one screen on where this worktree and the database stand."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from alembic_autocopy import repair
from alembic_autocopy.cli import drawing
from alembic_autocopy.cli.commands import options_from, project_from
from alembic_autocopy.cli.commands.common import show_inventory_warnings
from alembic_autocopy.cli.commands.graph import recorded_candidates
from alembic_autocopy.cli.output import Output, hint_without_database
from alembic_autocopy.cli.report import drift_lines
from alembic_autocopy.core.errors import AutocopyError
from alembic_autocopy.core.foreign import HeadSplit, split_heads
from alembic_autocopy.core.model import Candidate, ManifestEntry, Outcome, Plan
from alembic_autocopy.core.wording import blocked_message, id_list
from alembic_autocopy.sources import records, scanning
from alembic_autocopy.sources.inventory import gather

if TYPE_CHECKING:
    from alembic_autocopy.effects.project import ProjectConfig
    from alembic_autocopy.repair import Options, Situation
    from alembic_autocopy.sources.scanning import Inventory

# Imported inside functions, as each saves >= 5 ms where skipped: placement and the hooks module
# only where used.

DESCRIPTION = """\
One screen: the database's heads, each with where it comes from (this worktree, another
worktree and its branch, a branch, the database's record, or nowhere); this worktree's heads
(its own, and other worktrees' revisions present here); the copies alembic-autocopy placed
here; and what needs attention: revisions the database has that this worktree lacks, several
heads here, copies changed since they were copied, git hooks not installed. Changes nothing.
Exit 1 only when the database cannot be read (the rest is still shown).
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-db", action="store_true",
                        help="do not read the database (nothing about its heads)")


class Attention(NamedTuple):
    """One thing the user should know, with a stable id for scripts."""

    id: str
    message: str


def copy_attention(entries: list[ManifestEntry], current_sha: dict[str, str | None],
                   elsewhere: list[Candidate]) -> list[Attention]:
    """Pure. Copies edited here, copies whose original changed, copies that vanished."""
    found: list[Attention] = []
    for entry in entries:
        sha = current_sha.get(entry.path)
        if sha is None:
            found.append(Attention("copy-gone", f"copy of {entry.revision} at {entry.path} "
                                                "is gone; `alembic-autocopy clean` forgets it"))
            continue
        if sha != entry.sha256:
            found.append(Attention(
                "copy-modified", f"copy of {entry.revision} at {entry.path} was edited after "
                                 "it was copied (its original is unchanged by that edit)"))
        originals = [c for c in elsewhere if c.revision == entry.revision
                     and c.location.path is not None and c.location.path == entry.source_path]
        if originals and all(c.sha256 != entry.sha256 for c in originals):
            found.append(Attention(
                "copy-outdated", f"the original of {entry.revision} ({entry.source_path}) "
                                 "changed since it was copied here; `alembic-autocopy clean` "
                                 "then `alembic-autocopy upgrade` takes the new content"))
    return found


def heads_attention(split: HeadSplit, env_py_line: bool) -> list[Attention]:
    """Pure. What several heads here still stop, and the command that gets past it. Two heads
    of this worktree's own stop every revision command, ours too: they need a merge. With one
    own head and other worktrees' heads, env.py's line (``env_py_line``) already makes
    ``alembic upgrade head`` go to every head and autogenerate start from the own head."""
    if len(split.heads) < 2:
        return []
    found = f"this worktree has {len(split.heads)} heads ({', '.join(split.heads)})"
    if len(split.own_heads) > 1:
        merge = ("alembic merge heads -m 'merge heads'" if not split.foreign_heads
                 else shlex.join(["alembic", "merge", "-m", "merge heads", *split.own_heads]))
        return [Attention(
            "several-heads",
            f"{found}, {len(split.own_heads)} of them its own ({', '.join(split.own_heads)}): "
            "`alembic upgrade head`, `alembic revision` and `alembic-autocopy revision` "
            f"refuse until they are joined; run `{merge}`")]
    if env_py_line:
        return [Attention(
            "several-heads",
            f"{found}: with env.py's line `alembic upgrade head` goes to every head and "
            "`alembic revision --autogenerate` starts from this worktree's own head, but "
            "plain `alembic revision` (no env.py run) refuses; use `alembic-autocopy "
            "revision`")]
    return [Attention(
        "several-heads",
        f"{found}: plain `alembic upgrade head` and `alembic revision` refuse; use "
        "`alembic-autocopy upgrade` and `alembic-autocopy revision`, or `alembic upgrade "
        "heads`")]


def plan_attention(plan: Plan) -> list[Attention]:

    if not plan.unknown_applied:
        return []
    ids = ", ".join(plan.unknown_applied)
    if plan.outcome in (Outcome.CONFLICT, Outcome.UNRESOLVED):
        return [Attention("behind-blocked", f"the database has revision(s) this worktree "
                                            f"lacks ({ids}); {blocked_message(plan)}")]
    return [Attention("behind", f"the database has {len(plan.unknown_applied)} revision(s) "
                                f"this worktree lacks ({ids}): plain Alembic fails here; run "
                                f"`alembic-autocopy upgrade` ({len(plan.bring)} to bring in)")]


def missing_parent_attention(local: list[Candidate]) -> list[Attention]:
    """Pure. Revisions here whose parent (or dependency) no file here holds: Alembic cannot
    build its map, so the heads shown are not what it would compute."""

    known = {c.revision for c in local} | {label for c in local
                                          for label in c.header.branch_labels}
    gaps: dict[str, list[str]] = {}
    for candidate in local:
        for parent in candidate.header.needs:
            if parent not in known:
                gaps.setdefault(parent, []).append(candidate.revision)
    return [Attention("missing-parent",
                      f"revision(s) {id_list(children)} here need {parent}, which this "
                      "worktree lacks: plain Alembic fails to load its migrations; "
                      "`alembic-autocopy upgrade` brings it in")
            for parent, children in sorted(gaps.items())]


def missing_hooks(worktree_root: Path) -> list[str]:
    """The git hooks (post-checkout, post-merge, post-rewrite) that are not ours, where git
    really reads hooks (``git rev-parse --git-path hooks``, core.hooksPath honoured)."""
    from alembic_autocopy.workflow import hooks

    try:
        return [name for name, ours in hooks.installed(worktree_root).items() if not ours]
    except AutocopyError:
        return list(hooks.HOOK_TYPES)


def run(args: argparse.Namespace, out: Output) -> int:
    from alembic_autocopy.effects import placement

    project = project_from(args)
    options = options_from(args)
    inventory = gather(project, options)
    situation, database_error = (None, None) if args.no_db else _assess(project, options,
                                                                         inventory)
    heads: tuple[str, ...] | None = None
    where = "Database"
    extra: list[Candidate] = []
    if situation is not None:
        inventory = situation.inventory
        heads = situation.applied
        extra = recorded_candidates(situation)
        where = f"Database {situation.database_url or ''}".rstrip()
    show_inventory_warnings(inventory, out)
    root = scanning.this_worktree(project)
    manifest = placement.open_manifest(project, root)
    # A copy whose real file git brought since (a merge, a checkout) is no copy any more;
    # `clean` forgets its entry, status only reads.
    copies, now_tracked = placement.still_copies(manifest, root)
    managed = {entry.path: entry.source for entry in copies}
    split = split_heads(inventory.local, inventory.elsewhere, managed)
    graph = drawing.build_graph([*inventory.all, *extra], heads, managed)
    # The warnings are on their own `warning:` lines already: in --json they are listed
    # with the rest (id "scan"), on the terminal not a second time under "Needs attention".
    warned = [Attention("scan", text) for text in out.warnings]
    attention = _attention(situation, database_error, inventory, split, copies, root,
                           records.env_py_records(project))
    _print(out, graph, split, _Copies(copies, now_tracked), heads, where, root,
           inventory.local, attention, len(warned))
    attention = warned + attention
    failure = {} if database_error is None else {
        "error": database_error.message,
        "hint": hint_without_database(database_error.hint, "status")}
    out.emit({
        "ok": database_error is None,
        "database": None if heads is None else {
            "heads": [_head_json(graph.node(h)) for h in heads], "where": where},
        "worktree": {"path": str(root) if root else None,
                     "branch": _branch(inventory.local),
                     "heads": list(split.heads), "own_heads": list(split.own_heads),
                     "foreign_heads": list(split.foreign_heads),
                     "not_applied": _not_applied(graph, inventory.local)},
        "copies": [_copy_json(e) for e in copies],
        "now_tracked": [_copy_json(e) for e in now_tracked],
        "warnings": [{"id": a.id, "message": a.message} for a in attention],
        **failure,
    })
    if database_error is None:
        return 0
    out.error(failure["error"], failure["hint"])  # what was shown is not the whole story
    return 1


def _assess(project: ProjectConfig, options: Options, inventory: Inventory
            ) -> tuple[Situation | None, AutocopyError | None]:
    """The same assessment `check` makes (heads, plan, record table and drift), or why the
    database could not be read."""

    try:
        return repair.assess(project, options, found=inventory), None
    except AutocopyError as error:
        return None, error


def _attention(situation: Situation | None, database_error: AutocopyError | None,
               inventory: Inventory, split: HeadSplit, copies: list[ManifestEntry],
               root: Path | None, env_py_line: bool) -> list[Attention]:
    """Everything that needs the user, in the order shown: the database, the plan, this
    worktree's graph, the copies, the hooks."""
    from alembic_autocopy.effects import placement

    attention: list[Attention] = []
    if database_error is not None:
        attention.append(Attention("database",
                                   f"cannot read the database: {database_error.message}"))
    if situation is not None:
        attention += _assessment_attention(situation)
    attention += missing_parent_attention(inventory.local)
    attention += heads_attention(split, env_py_line)
    current = {entry.path: placement.file_sha256(Path(entry.path)) for entry in copies}
    attention += copy_attention(copies, current, inventory.elsewhere)
    missing = missing_hooks(root) if root is not None else []
    if missing:
        attention.append(Attention("hooks-missing", f"git hooks not installed "
                                   f"({', '.join(missing)}): nothing checks the database after "
                                   "checkout, merge or rebase; run `alembic-autocopy "
                                   "install-hooks`"))
    return attention


def _assessment_attention(situation: Situation) -> list[Attention]:
    """What the assessment found: layout, a revision id twice here, the plan, drift."""

    attention = [Attention("layout", text) for text in repair.layout_warnings(situation)]
    problem = repair.blocking_problem(situation)
    if problem is not None:
        attention.append(Attention("duplicate-revision", problem.message))
    attention += plan_attention(situation.plan)
    attention += [Attention("drift", line) for line in drift_lines(situation.drift)]
    return attention


class _Copies(NamedTuple):
    """The manifest's entries: copies still here, and those git now tracks."""

    placed: list[ManifestEntry]
    now_tracked: list[ManifestEntry]


def _copy_json(entry: ManifestEntry) -> dict[str, Any]:
    return {"revision": entry.revision, "path": entry.path, "source": entry.source,
            "placed_at": entry.placed_at}


def _head_json(node: drawing.Node) -> dict[str, Any]:
    location = node.origin.location
    return {"revision": node.revision, "message": node.message,
            "residence": node.origin.residence.value, "origin": node.origin.describe(),
            "path": location.path if location else None,
            "branch": location.branch if location else None}


def _branch(local: list[Candidate]) -> str | None:
    return next((c.location.branch for c in local if c.location.branch), None)


def _not_applied(graph: drawing.RevisionGraph, local: list[Candidate]) -> list[str]:
    here = {c.revision for c in local}
    return [n.revision for n in graph.nodes if n.revision in here and n.applied is False]


def _print(out: Output, graph: drawing.RevisionGraph, split: HeadSplit,
           copies: _Copies, heads: tuple[str, ...] | None, where: str,
           root: Path | None, local: list[Candidate], attention: list[Attention],
           warned: int) -> None:
    if heads is not None:
        _print_database(out, graph, heads, where)
    _print_worktree(out, graph, split, root, local)
    out.line(out.style(f"Copies placed here by alembic-autocopy: {len(copies.placed)}",
                       "bold"))
    for entry in copies.placed:
        shown = os.path.relpath(entry.path, root) if root else entry.path
        out.line(f"  {entry.revision}  {shown}  <- {entry.source}")
    for entry in copies.now_tracked:
        shown = os.path.relpath(entry.path, root) if root else entry.path
        out.line(f"  {entry.revision}  {shown}: git tracks it now (a merge or checkout "
                 "brought the real file); `alembic-autocopy clean` forgets it")
    if attention:
        out.line(out.style(f"Needs attention: {len(attention)}", "bold", "yellow"))
        for item in attention:
            out.line(f"  - {item.message}  [{item.id}]")
    count = len(attention) + warned
    above = f" ({warned} warning(s) above)" if warned else ""
    out.result("All clear." if not count else f"{count} thing(s) need attention{above}.")


def _print_database(out: Output, graph: drawing.RevisionGraph, heads: tuple[str, ...],
                    where: str) -> None:
    out.line(out.style(f"{where}: {len(heads)} head(s)", "bold"))
    for head in heads:
        node = graph.node(head)
        out.line(f"  {_revision_text(node)}  <- {node.origin.describe()}")
    if not heads:
        out.line("  (empty: nothing applied)")


def _print_worktree(out: Output, graph: drawing.RevisionGraph, split: HeadSplit,
                    root: Path | None, local: list[Candidate]) -> None:
    """This worktree's heads (own or another worktree's), and what is not applied yet."""
    branch = _branch(local)
    label = f"{root or '(not a git worktree)'}" + (f" ({branch})" if branch else "")
    out.line(out.style(f"This worktree {label}: {len(split.heads)} head(s)", "bold"))
    for head in split.heads:
        node = graph.node(head)
        whose = "own" if head in split.own_heads else node.origin.describe()
        out.line(f"  {_revision_text(node)}  [{whose}]")
    if split.foreign and not set(split.own_heads) & set(split.heads):
        out.line(f"  own head: {', '.join(split.own_heads) or 'base (no revision of its own)'}"
                 " (other worktrees' revisions build on it)")
    pending = _not_applied(graph, local)
    if pending:
        out.line(f"  not applied yet: {', '.join(pending)}")


def _revision_text(node: drawing.Node) -> str:
    return node.revision + (f"  {node.message}" if node.message else "")
