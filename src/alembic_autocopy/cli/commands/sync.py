"""``alembic-autocopy sync``: fetch, rebase (or merge) onto the upstream, then repair.

After the rebase, git may bring the very migrations this worktree held as copies: those
copies are then dropped from the manifest (git's file replaced the ignored copy at the same
path; a copy of the same revision under another name is removed when unchanged). The
repair then brings in whatever the database still needs and upgrades once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from alembic_autocopy import repair
from alembic_autocopy.cli.commands import add_notify_url, add_prefer, options_from, project_from
from alembic_autocopy.cli.commands.common import show_inventory_warnings
from alembic_autocopy.cli.output import Output
from alembic_autocopy.cli.report import manifest_entry_json
from alembic_autocopy.core.errors import (
    AutocopyError,
    ConfigError,
    GitError,
    MigrationParseError,
    UsageError,
)
from alembic_autocopy.core.model import ManifestEntry, SkippedFile
from alembic_autocopy.core.planning import graph_order
from alembic_autocopy.effects import git, placement
from alembic_autocopy.effects.project import ProjectConfig
from alembic_autocopy.sources import folders
from alembic_autocopy.sources.inventory import gather
from alembic_autocopy.workflow import events

if TYPE_CHECKING:
    from alembic_autocopy.repair import RepairReport

# Imported inside functions, as each saves >= 5 ms where skipped: Alembic's RevisionMap only when
# heads must be compared.


DESCRIPTION = """\
Bring this branch up to date, then the database: fetch, rebase this branch onto its upstream
(`git branch --set-upstream-to`), or else onto base_branch from [tool.alembic-autocopy]
(e.g. develop), or onto --onto REF; --merge merges instead. Copies this tool had placed that
git now brings are dropped from the manifest. Then every migration the database still lacks
here is brought in and the database upgraded once (as `alembic-autocopy upgrade`).

A conflict stops everything with git's own message, the repository left as git left it
(exit 1): resolve, then `git rebase --continue` (or `--abort`), then `alembic-autocopy
upgrade`. Uncommitted changes to tracked files are refused before anything starts.
"""

# Set while our own git commands run: the installed hooks then stay quiet (the repair
# that follows does their work).
HOOK_SKIP_VARIABLE = "ALEMBIC_AUTOCOPY_NO_HOOK"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--merge", action="store_true",
                        help="merge the upstream into this branch instead of rebasing")
    parser.add_argument("--onto", metavar="REF", default=None,
                        help="rebase onto (or merge) REF instead of the upstream")
    parser.add_argument("--no-fetch", dest="fetch_first", action="store_false",
                        help="do not fetch before rebasing")
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would be fetched, rebased and repaired; change nothing")
    add_prefer(parser)
    add_notify_url(parser)


class Upstream(NamedTuple):
    ref: str  # full ref name, e.g. refs/remotes/origin/develop or refs/heads/develop
    remote: str | None  # the remote to fetch, None for a local branch
    why: str  # "upstream of feature-b", "base_branch develop", "--onto"

    @property
    def short(self) -> str:
        for prefix in ("refs/heads/", "refs/remotes/"):
            if self.ref.startswith(prefix):
                return self.ref[len(prefix):]
        return self.ref


class SyncReport:
    def __init__(self, upstream: Upstream, branch: str, before: str) -> None:
        self.upstream = upstream
        self.branch = branch
        self.before = before
        self.after = ""
        self.fetched = False
        self.fetch_warning: str | None = None
        self.commits_rebased = 0
        self.commits_brought = 0
        self.now_from_git: list[ManifestEntry] = []
        self.kept_modified: list[ManifestEntry] = []


def _git(args: list[str], root: Path) -> str:
    return git.run_git(args, root).text.strip()


def _ref_exists(root: Path, ref: str) -> bool:
    result = git.run_git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], root,
                         check=False)
    return result.returncode == 0


def _tracking(root: Path, branch_ref: str) -> tuple[str, str] | None:
    """(upstream ref, remote name) configured for a local branch, if any."""
    line = _git(["for-each-ref", "--format=%(upstream)%00%(upstream:remotename)", branch_ref],
                root)
    ref, _, remote = line.partition("\0")
    return (ref, remote) if ref else None


def find_upstream(root: Path, branch: str, onto: str | None,
                  base_branch: str | None) -> Upstream:
    """Where to rebase: --onto, else this branch's upstream, else the configured base."""
    if onto:
        if not _ref_exists(root, onto):
            raise UsageError(f"--onto {onto}: no such branch or commit")
        full = _git(["rev-parse", "--symbolic-full-name", onto], root) or onto
        remote = full.split("/")[2] if full.startswith("refs/remotes/") else None
        return Upstream(full, remote, "--onto")
    tracking = _tracking(root, f"refs/heads/{branch}")
    if tracking is not None and _ref_exists(root, tracking[0]):
        ref, remote = tracking
        return Upstream(ref, remote if remote and remote != "." else None,
                        f"upstream of {branch}")
    if base_branch:
        local = f"refs/heads/{base_branch}"
        if _ref_exists(root, local):
            base_tracking = _tracking(root, local)
            if base_tracking is not None and base_tracking[1] not in ("", "."):
                # develop tracks origin/develop: the fetched state is the newest one
                return Upstream(base_tracking[0], base_tracking[1],
                                f"base_branch {base_branch}")
            return Upstream(local, None, f"base_branch {base_branch}")
        for candidate in (f"refs/remotes/{base_branch}", f"refs/remotes/origin/{base_branch}"):
            if _ref_exists(root, candidate):
                return Upstream(candidate, candidate.split("/")[2],
                                f"base_branch {base_branch}")
        raise ConfigError(f"base_branch {base_branch!r} names no branch of this repository",
                          hint="fix base_branch in [tool.alembic-autocopy], or pass --onto")
    raise UsageError(
        f"branch {branch} has no upstream and no base branch is configured",
        hint=f"`git branch --set-upstream-to=develop {branch}`, or set base_branch = "
             "\"develop\" in [tool.alembic-autocopy], or pass --onto REF")


def _in_progress(root: Path) -> str | None:
    for name, what in (("rebase-merge", "rebase"), ("rebase-apply", "rebase"),
                       ("MERGE_HEAD", "merge"), ("CHERRY_PICK_HEAD", "cherry-pick")):
        if git.git_path(root, name).exists():
            return what
    return None


def _check_ready(root: Path) -> str:
    """The current branch; refuse a detached HEAD, an operation in progress, local edits."""
    operation = _in_progress(root)
    if operation:
        raise AutocopyError(f"a git {operation} is in progress in {root}",
                            hint=f"finish it (`git {operation} --continue`) or abort it "
                                 f"(`git {operation} --abort`) first")
    result = git.run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], root, check=False)
    branch = result.text.strip()
    if result.returncode != 0 or not branch:
        raise UsageError(f"{root} is not on a branch (detached HEAD)",
                         hint="check out the branch to sync first")
    changes = _git(["status", "--porcelain", "--untracked-files=no"], root)
    if changes:
        count = len(changes.splitlines())
        raise AutocopyError(f"{count} uncommitted change(s) to tracked files in {root}",
                            hint="commit or stash them, then run sync again")
    return branch


def _fetch(root: Path, upstream: Upstream, timeout: float) -> str | None:
    """Fetch the upstream's remote; return a warning instead of failing (offline is fine)."""
    if upstream.remote is None:
        return None
    try:
        git.run_git(["fetch", "--quiet", upstream.remote], root, timeout=timeout)
    except GitError as error:
        return f"could not fetch {upstream.remote}: {error.message}; using what was fetched " \
               "before"
    except Exception as error:  # subprocess.TimeoutExpired
        return f"could not fetch {upstream.remote}: {type(error).__name__}; using what was " \
               "fetched before"
    return None


def _count(root: Path, range_spec: str) -> int:
    return int(_git(["rev-list", "--count", range_spec], root) or 0)


def _integrate(root: Path, upstream: Upstream, merge: bool,
               out: Output) -> git.GitResult:
    """Run the rebase (or merge); on failure show git's own words and stop (exit 1)."""
    args = (["merge", "--no-edit", upstream.ref] if merge
            else ["rebase", upstream.ref])
    result = git.run_git(args, root, check=False)
    if result.returncode == 0:
        return result
    verb = "merge" if merge else "rebase"
    text = (result.text + result.stderr).rstrip()
    if text and not out.json_mode:
        print(text, file=sys.stderr)  # git's own message, as git wrote it
    stopped = git.git_path(root, "MERGE_HEAD" if merge else "rebase-merge").exists() or (
        not merge and git.git_path(root, "rebase-apply").exists())
    if stopped:
        raise _Stopped(
            f"git {verb} onto {upstream.short} stopped on a conflict; the repository is as "
            "git left it", hint=f"resolve the conflicts, `git add` them, `git {verb} "
            f"--continue` (or `git {verb} --abort` to go back), then `alembic-autocopy "
            "upgrade`", git_output=text)
    raise _Stopped(f"git {verb} onto {upstream.short} failed (exit {result.returncode})",
                   hint="see git's message above", git_output=text)


class _Stopped(AutocopyError):
    def __init__(self, message: str, hint: str, git_output: str) -> None:
        super().__init__(message, hint)
        self.git_output = git_output


def drop_copies_git_brings(project: ProjectConfig, root: Path,
                           report: SyncReport) -> None:
    """Forget the copies git now provides; remove a copy git brought under another name."""
    manifest = placement.open_manifest(project, root)
    reconciled = placement.reconcile(manifest, root)
    report.now_from_git.extend(reconciled.now_tracked)
    if not manifest.entries:
        return
    tracked = _tracked_revisions(project, root, {entry.path for entry in manifest.entries})
    superseded = [entry for entry in manifest.entries if entry.revision in tracked]
    if not superseded:
        return
    manifest.entries = _remove_superseded(manifest, superseded, report)
    placement.sync_ignores(manifest)  # saves the manifest too


def _tracked_revisions(project: ProjectConfig, root: Path, copies: set[str]) -> dict[str, str]:
    """revision -> path of each migration git tracks here (the copies left out)."""
    skipped: list[SkippedFile] = []
    paths = [path for location in project.version_locations
             for path in folders.iter_migration_paths(
                 location, project.recursive_version_locations, skipped)
             if str(path) not in copies]
    tracked = git.tracked(root, paths) if paths else set()
    tracked_ids: dict[str, str] = {}
    for path in paths:
        if path not in tracked:
            continue
        try:
            facts = folders.read_migration_file(path, project.tool.max_file_bytes)
        except (OSError, MigrationParseError):
            continue  # the scan reports unreadable files; here they provide nothing
        tracked_ids[facts.header.revision] = str(path)
    return tracked_ids


def _remove_superseded(manifest: placement.Manifest, superseded: list[ManifestEntry],
                       report: SyncReport) -> list[ManifestEntry]:
    """Remove each superseded copy still as placed; the manifest entries to keep."""
    kept: list[ManifestEntry] = []
    for entry in manifest.entries:
        if entry not in superseded:
            kept.append(entry)
        elif placement.file_sha256(Path(entry.path)) == entry.sha256:
            placement.confine(Path(entry.path), manifest.allowed, "remove")
            os.unlink(entry.path)
            report.now_from_git.append(entry)
        else:
            kept.append(entry)  # the user edited the copy: never delete their work
            report.kept_modified.append(entry)
    return kept


def run(args: argparse.Namespace, out: Output) -> int:
    project = project_from(args)
    root = git.toplevel(project.here)
    if root is None:
        raise ConfigError(f"{project.here} is not inside a git worktree",
                          hint="sync rebases a git branch; run it inside the worktree")
    branch = _check_ready(root)
    upstream = find_upstream(root, branch, args.onto, project.tool.base_branch)
    report = SyncReport(upstream, branch, before=_git(["rev-parse", "HEAD"], root))
    if args.dry_run:
        return _dry_run(report, root, args, out)
    os.environ[HOOK_SKIP_VARIABLE] = "1"
    if args.fetch_first and upstream.remote is not None:
        _fetch_upstream(root, project, report, out)
    report.commits_rebased = _count(root, f"{upstream.ref}..HEAD")
    report.commits_brought = _count(root, f"HEAD..{upstream.ref}")
    try:
        _bring_upstream(root, report, args.merge, out)
    except _Stopped as stopped:
        return _stop(stopped, report, out)
    report.after = _git(["rev-parse", "HEAD"], root)
    project = project_from(args)  # the rebase may have changed the configuration
    _drop_copies(project, root, report, out)
    repaired = _repair(project, branch, args)
    own_heads = committed_heads(repaired)
    _show_repair(repaired, own_heads, project, branch, out)
    heads = ", ".join(repaired.heads_after) or "(none)"
    out.result(f"Synced {branch} with {upstream.short}; database heads: {heads}")
    out.emit(_sync_json(report, bool(args.merge), repaired, own_heads))
    return 0


def _fetch_upstream(root: Path, project: ProjectConfig, report: SyncReport,
                    out: Output) -> None:
    report.fetch_warning = _fetch(root, report.upstream, project.tool.fetch_timeout)
    report.fetched = report.fetch_warning is None
    if report.fetch_warning:
        out.warn(report.fetch_warning)


def _bring_upstream(root: Path, report: SyncReport, merge: bool, out: Output) -> None:
    """Rebase (or merge) when the upstream has new commits; raises _Stopped when git stops."""
    upstream = report.upstream
    if not report.commits_brought:
        out.line(f"{report.branch} already contains {upstream.short} ({upstream.why})")
        return
    verb = "Merging" if merge else "Rebasing"
    out.line(f"{verb} {report.branch} onto {upstream.short} ({upstream.why}): "
             f"{report.commits_brought} new commit(s) there")
    _integrate(root, upstream, merge, out)


def _stop(stopped: _Stopped, report: SyncReport, out: Output) -> int:
    """Git stopped the rebase (or merge): say so, leave everything as git left it."""
    out.emit({"ok": False, "error": stopped.message, "hint": stopped.hint,
              "exit_code": stopped.exit_code, "git_output": stopped.git_output,
              "upstream": report.upstream.ref, "branch": report.branch})
    out.error(stopped.message, stopped.hint)
    return stopped.exit_code


def _drop_copies(project: ProjectConfig, root: Path, report: SyncReport, out: Output) -> None:
    drop_copies_git_brings(project, root, report)
    if report.now_from_git:
        out.line(f"{len(report.now_from_git)} copied migration(s) now come from git: "
                 "dropped from the manifest")
    for entry in report.kept_modified:
        out.warn(f"{entry.path} was edited after it was copied: kept (git now brings "
                 f"revision {entry.revision} too; remove the copy yourself)")


def _repair(project: ProjectConfig, branch: str, args: argparse.Namespace) -> RepairReport:
    """Repair and upgrade to `head`; two heads of this branch's own are named as such."""

    try:
        return events.repair(project, "head", options_from(args))
    except AutocopyError as error:
        own = committed_heads_here(project)
        if len(own) > 1:  # Alembic refuses `head`: say what joins them
            raise AutocopyError(
                f"{branch} now has {len(own)} heads of its own ({', '.join(own)}): both "
                f"branches added migrations, so Alembic will not upgrade to `head`",
                hint=f"join them with `alembic merge -m \"merge\" {' '.join(own)}`, commit "
                     "the new file, then run `alembic-autocopy upgrade`") from error
        raise


def _show_repair(repaired: RepairReport, own_heads: tuple[str, ...], project: ProjectConfig,
                 branch: str, out: Output) -> None:
    show_inventory_warnings(repaired.situation.inventory, out, project=project,
                            plan=repaired.situation.plan)
    bring = repaired.situation.plan.bring
    if bring:
        out.line(f"Brought in {len(bring)} migration(s): "
                 + ", ".join(c.revision for c in bring))
    if repaired.applied:
        out.line(f"Applied {len(repaired.applied)} migration(s): "
                 + ", ".join(repaired.applied))
    if len(own_heads) > 1:
        out.warn(f"{branch} now has {len(own_heads)} heads of its own "
                 f"({', '.join(own_heads)}): both branches added migrations; join them with "
                 f"`alembic merge -m \"merge\" {' '.join(own_heads)}`, then commit the new "
                 "file")


def _sync_json(report: SyncReport, merge: bool, repaired: RepairReport,
               own_heads: tuple[str, ...]) -> dict[str, object]:
    upstream = report.upstream
    return {
        "ok": True, "branch": report.branch, "upstream": upstream.ref, "why": upstream.why,
        "merge": merge, "fetched": report.fetched,
        "fetch_warning": report.fetch_warning, "before": report.before,
        "after": report.after, "commits_brought": report.commits_brought,
        "commits_rebased": report.commits_rebased if not merge else 0,
        "copies_now_from_git": [manifest_entry_json(e) for e in report.now_from_git],
        "copies_kept_modified": [manifest_entry_json(e) for e in report.kept_modified],
        "brought_in": [c.revision for c in repaired.situation.plan.bring],
        "placed": [e.path for e in repaired.placed],
        "applied": repaired.applied, "heads_after": list(repaired.heads_after),
        "committed_heads": list(own_heads),
    }


def committed_heads(repaired: RepairReport) -> tuple[str, ...]:
    """The heads of this worktree's own files (copies left out), in graph order."""
    from alembic_autocopy.core import revisions

    own = [c.header for c in repaired.situation.inventory.local if not c.location.is_copy]
    if not own:
        return ()
    try:
        return graph_order(revisions.heads(own), own)
    except Exception:  # an invalid graph of its own: upgrade has said so already
        return ()


def committed_heads_here(project: ProjectConfig) -> tuple[str, ...]:
    """The heads of this worktree's own files (copies left out), read again."""
    from alembic_autocopy.core import revisions

    found = gather(project, repair.Options(), here_only=True)
    own = [c.header for c in found.local if not c.location.is_copy]
    try:
        return graph_order(revisions.heads(own), own) if own else ()
    except Exception:  # an invalid graph of its own: the error at hand says more
        return ()


def _dry_run(report: SyncReport, root: Path, args: argparse.Namespace, out: Output) -> int:
    upstream = report.upstream
    ahead = _count(root, f"HEAD..{upstream.ref}")
    mine = _count(root, f"{upstream.ref}..HEAD")
    verb = "merge" if args.merge else "rebase"
    fetch = (f"fetch {upstream.remote}, then " if args.fetch_first and upstream.remote
             else "")
    out.result(f"Dry run: would {fetch}{verb} {report.branch} ({mine} commit(s) of its own) "
               f"onto {upstream.short} ({upstream.why}, {ahead} new commit(s) as last "
               "fetched), then repair. Nothing changed.")
    out.emit({"ok": True, "dry_run": True, "branch": report.branch,
              "upstream": upstream.ref, "why": upstream.why, "remote": upstream.remote,
              "merge": bool(args.merge), "commits_brought": ahead, "commits_own": mine})
    return 0
