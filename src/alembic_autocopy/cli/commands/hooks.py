"""``alembic-autocopy install-hooks`` and ``uninstall-hooks``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from alembic_autocopy.cli.commands import project_from
from alembic_autocopy.cli.output import Output
from alembic_autocopy.core.errors import ConfigError
from alembic_autocopy.effects import git
from alembic_autocopy.workflow import hooks

DESCRIPTION = """\
install-hooks: git hooks post-checkout, post-merge and post-rewrite, written where git reads
them (`git rev-parse --git-path hooks`: shared by every worktree of the repository, or
core.hooksPath). After each checkout, merge or rebase they run `alembic-autocopy check` (or,
with --auto-upgrade, the repair: `alembic-autocopy upgrade`) in the worktree, print one line
and never stop git. When the operation changed no migration file they say so without
touching the database, and without starting Python (a `git diff --quiet` over the version
folders, the configuration files and env.py) unless the configuration cannot be read that way
(ALEMBIC_CONFIG set, a folder given as a package or an absolute path, a folder outside the
worktree). A hook that was already there is kept as <name>.legacy and runs first.
The hooks call this tool with the Python that installed them; the Alembic configuration is
the one found from the current folder (or -c/-n/-x), recorded relative to the worktree root.
Set ALEMBIC_AUTOCOPY_NO_HOOK=1 to silence them for one command.

uninstall-hooks: remove them and put back the <name>.legacy hooks.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    if parser.prog.split()[-1] == "install-hooks":
        parser.add_argument("--auto-upgrade", action="store_true",
                            help="repair and upgrade after each checkout instead of only "
                                 "checking")


def run(args: argparse.Namespace, out: Output) -> int:
    if args.command == "uninstall-hooks":
        return _uninstall(out)
    return _install(args, out)


def _worktree_root(start: Path) -> Path:
    root = git.toplevel(start)
    if root is None:
        raise ConfigError(f"{start} is not inside a git repository",
                          hint="run this inside a worktree of the repository")
    return root


def _install(args: argparse.Namespace, out: Output) -> int:
    project = project_from(args)  # refuse to install hooks for a project that is not there
    cwd = Path.cwd().absolute()
    root = _worktree_root(cwd)
    project_dir = os.path.relpath(cwd, root)
    if project_dir.startswith(".."):
        raise ConfigError(f"{cwd} is outside the worktree {root}")
    settings = hooks.HookSettings(
        python=sys.executable, project_dir=project_dir,
        config_args=tuple(_config_args(args.config, cwd, root)), section=project.section,
        x_args=tuple(args.x), auto_upgrade=args.auto_upgrade,
        fast=hooks.fast_path(root, project))
    changes = hooks.install(root, settings)
    _report_install(out, root, changes, settings)
    return 0


def _config_args(configs: list[str], cwd: Path, root: Path) -> list[str]:
    """``-c`` paths as each worktree reads them: one inside this worktree made relative
    (each worktree has its own copy), any other kept."""
    written: list[str] = []
    for config in configs:
        path = Path(config)
        if path.is_absolute() and _inside(path, root):
            config = os.path.relpath(path, cwd)
        written.append(config)
    return written


def _report_install(out: Output, root: Path, changes: list[hooks.HookChange],
                    settings: hooks.HookSettings) -> None:
    folder = changes[0].path.parent
    names = ", ".join(change.name for change in changes)
    # The main worktree's .git/hooks lies under its root, yet is shared like any git folder.
    shared = _inside(folder, git.common_dir(root)) or not _inside(folder, root)
    where = ("shared by every worktree of this repository" if shared
             else "inside this worktree (core.hooksPath is relative): other worktrees read "
                  "their own copy of that folder")
    if not shared:
        out.warn(f"hooks written to {folder}, {where}")
    for change in changes:
        if change.legacy is not None and change.action == "installed":
            out.line(f"Kept your {change.name} as {change.legacy.name}: it still runs first.")
    work = "the repair (upgrade)" if settings.auto_upgrade else "`check`"
    # git runs hooks at the worktree root; they move to this folder first (prepend_sys_path)
    project_dir = settings.project_dir
    in_folder = f" in {project_dir}/ of each worktree" if project_dir != "." else ""
    out.result(f"Installed {names} in {folder} ({where}). Each runs {work}{in_folder} with "
               f"{settings.python}, prints one line and never stops git.")
    out.emit({"ok": True, "hooks_dir": str(folder), "shared": shared,
              "python": settings.python, "project_dir": project_dir,
              "auto_upgrade": bool(settings.auto_upgrade),
              "without_python": settings.fast is not None,
              "hooks": [{"name": c.name, "path": str(c.path), "action": c.action,
                         "legacy": str(c.legacy) if c.legacy else None} for c in changes]})


def _uninstall(out: Output) -> int:
    root = _worktree_root(Path.cwd())
    changes = hooks.uninstall(root)
    for change in changes:
        if change.action == "restored":
            out.line(f"Put back your {change.name} (it was kept as {change.name}"
                     f"{hooks.LEGACY_SUFFIX}).")
        elif change.action == "not-ours":
            out.warn(f"{change.path} was not installed by alembic-autocopy: left alone")
    removed = [c.name for c in changes if c.action in ("removed", "restored")]
    folder = hooks.hooks_dir(root)
    if removed:
        out.result(f"Removed the alembic-autocopy hooks ({', '.join(removed)}) from {folder}.")
    else:
        out.result(f"No alembic-autocopy hook was installed in {folder}.")
    out.emit({"ok": True, "hooks_dir": str(folder),
              "hooks": [{"name": c.name, "path": str(c.path), "action": c.action,
                         "legacy": str(c.legacy) if c.legacy else None} for c in changes]})
    return 0


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True
