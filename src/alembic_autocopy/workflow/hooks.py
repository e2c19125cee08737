"""Git hooks that check the shared database after checkout, merge and rebase.

Installed where git really reads hooks (``git rev-parse --git-path hooks``: the common git
folder, so every linked worktree runs them, or ``core.hooksPath``). Each hook is a small
``sh`` script carrying an ID marker line; a hook that was there before is kept as
``<name>.legacy`` and run first. The script calls this module with the interpreter that
installed it (``python -m alembic_autocopy.hooks``), which prints one line and always exits
0: these hooks run after git has acted, and must never make git look failed.

When the git operation changed no migration file, the script itself says so without starting
Python (one ``git diff --quiet`` over the paths install-hooks wrote into it: the version
folders, the configuration files and env.py), and Python, when it does start, says so without
reading the database (no Alembic import, no env.py): that keeps the common checkout fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from alembic_autocopy.core import __version__
from alembic_autocopy.core.errors import AutocopyError, PlacementError
from alembic_autocopy.effects import git
from alembic_autocopy.effects.project import TOOL_SECTION, ProjectConfig, load_project

# Imported inside functions, as each saves >= 5 ms where skipped: the repair only when a migration
# changed (a hook's start stays light).

HOOK_TYPES = ("post-checkout", "post-merge", "post-rewrite")
ID_MARKER = "# alembic-autocopy-hook-id: 7c1f4a9e2d"  # identifies our scripts; never change
LEGACY_SUFFIX = ".legacy"
SKIP_VARIABLE = "ALEMBIC_AUTOCOPY_NO_HOOK"  # set: the hooks do nothing (sync sets it)
IN_HOOK_VARIABLE = "ALEMBIC_AUTOCOPY_HOOK"  # set while a hook runs: no progress display
VERBOSE_VARIABLE = "ALEMBIC_AUTOCOPY_HOOK_VERBOSE"  # set: show env.py's own output
PREFIX = "alembic-autocopy:"
NOTHING_CHANGED = f"{PREFIX} no migration changed; nothing to check"
_NULL_COMMIT = frozenset({"0" * 40, "0" * 64})
# What git sets inside hooks and would redirect the script's own git calls (as effects.git).
_REDIRECTING_VARIABLES = (
    "GIT_DIR", "GIT_INDEX_FILE", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_PREFIX",
    "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES", "GIT_QUARANTINE_PATH",
)


# --- installing ------------------------------------------------------------------------------

class FastPath(NamedTuple):
    """What the script checks itself, without starting Python, before it says "no migration
    changed". Paths are relative to the worktree root, valid in every worktree."""

    diffed: tuple[str, ...]  # version folders, configuration files, env.py
    configs: tuple[tuple[str, str], ...]  # (file, blob id): the configuration install read
    absent: tuple[str, ...]  # configuration files Alembic would read if they appeared


class HookSettings(NamedTuple):
    """What the installed hooks run, relative to each worktree's root."""

    python: str  # the interpreter that installed them
    project_dir: str  # folder (relative to the worktree root) the command runs in
    config_args: tuple[str, ...] = ()
    section: str = "alembic"
    x_args: tuple[str, ...] = ()
    auto_upgrade: bool = False
    fast: FastPath | None = None  # None: every run asks Python


class HookChange(NamedTuple):
    name: str
    path: Path
    action: str  # installed, updated, removed, restored, absent, not-ours
    legacy: Path | None = None  # the previous hook, kept (install) or put back (uninstall)


def hooks_dir(worktree: Path) -> Path:
    """The folder git reads hooks from for ``worktree`` (honours ``core.hooksPath``)."""
    return git.git_path(worktree, "hooks")


def refuse_tracked_folder(worktree: Path, folder: Path) -> None:
    """Never write hooks into a folder git tracks (``core.hooksPath`` set to a folder of the
    repository, e.g. ``.githooks``): a rewritten hook would be a change to commit, in every
    clone."""
    root = git.toplevel(worktree)
    if root is None:
        return
    try:
        inside = Path(os.path.realpath(folder)).relative_to(os.path.realpath(root))
    except ValueError:
        return  # outside this worktree (the repository's own hooks folder, or elsewhere)
    listed = git.run_git(["--literal-pathspecs", "ls-files", "-z", "--", str(inside)],
                         root).stdout
    if any(listed.split(b"\0")):
        raise PlacementError(
            f"refusing to write hooks into {folder}: core.hooksPath points to a folder git "
            "tracks in this repository",
            hint="add a line running `alembic-autocopy check` to your tracked hooks "
                 "yourself (and commit it), or unset core.hooksPath; nothing was changed")


def is_ours(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return ID_MARKER in handle.read(4096)
    except OSError:
        return False


def hook_script(name: str, settings: HookSettings) -> str:
    """The ``sh`` script for hook ``name``: the legacy hook first, then the check (by the
    script itself when it can tell that no migration changed, else by Python)."""
    command = [settings.python, "-m", "alembic_autocopy.hooks", name,
               "--project-dir", settings.project_dir]
    for config in settings.config_args:
        command += ["-c", config]
    if settings.section != "alembic":
        command += ["-n", settings.section]
    for x_arg in settings.x_args:
        command += ["-x", x_arg]
    if settings.auto_upgrade:
        command.append("--auto-upgrade")
    call = shlex.join(command) + ' -- "$@"'
    legacy = f'"$hook_dir/{name}{LEGACY_SUFFIX}"'
    reads_stdin = name == "post-rewrite"  # git writes "old new" lines to it
    lines = [
        "#!/bin/sh",
        ID_MARKER,
        f"# {name} hook installed by `alembic-autocopy install-hooks` ({__version__}). It checks",
        "# that this worktree knows every revision the shared database applied, prints one",
        "# line and never stops git. `alembic-autocopy uninstall-hooks` removes it and puts back",
        f"# {name}{LEGACY_SUFFIX} (the hook that was here before; it runs first).",
        'hook_dir="${0%/*}"',
    ]
    if reads_stdin:
        lines.append('input="$(cat)"')
    lines += [
        f"if [ -x {legacy} ]; then",
        (f'    printf "%s\\n" "$input" | {legacy} "$@"' if reads_stdin
         else f'    {legacy} "$@"'),
        "fi",
        *_shell_check(name, settings),
        f'if [ -z "${{{SKIP_VARIABLE}:-}}" ]; then',
        '    alembic_autocopy_unchanged "$@"',
        "    case $? in",
        f"    0) echo {shlex.quote(NOTHING_CHANGED)} ;;",
        "    1) ;;",
        "    *)",
        f"        if [ -x {shlex.quote(settings.python)} ]; then",
        (f'            printf "%s\\n" "$input" | {IN_HOOK_VARIABLE}=1 {call}' if reads_stdin
         else f"            {IN_HOOK_VARIABLE}=1 {call}"),
        "        else",
        "            echo " + shlex.quote(f"{PREFIX} hook skipped: {settings.python} is gone; "
                                     "run `alembic-autocopy install-hooks` again"),
        "        fi ;;",
        "    esac",
        "fi",
        "exit 0",
    ]
    return "\n".join(lines) + "\n"


# --- the check the script does itself ----------------------------------------------------------

def _shell_check(name: str, settings: HookSettings) -> list[str]:
    """``alembic_autocopy_unchanged``, the part of ``run_hook`` the shell can answer:
    returns 0 (no migration changed: say so), 1 (nothing to say) or 2 (ask Python)."""
    fast = settings.fast
    lines = [] if fast is None else [
        "# git's variables inside a hook would redirect these reads (as Python strips them)",
        "alembic_autocopy_git() {",
        f"    (unset {' '.join(_REDIRECTING_VARIABLES)}",
        '     export GIT_OPTIONAL_LOCKS=0; exec git "$@") 2>/dev/null',
        "}",
    ]
    lines.append("alembic_autocopy_unchanged() {")
    if name == "post-checkout":
        lines.append('    [ "$3" = 0 ] && return 1  # a file checkout, not a branch switch')
    if fast is None:
        return [*lines, "    return 2  # install-hooks could not write this check in sh", "}"]
    lines += _previous_commit_lines(name)
    quoted = shlex.quote
    if settings.project_dir not in (".", ""):  # this branch has the project
        lines.append(f"    [ -d {quoted(settings.project_dir)} ] || return 2")
    lines.append('    [ -z "${ALEMBIC_CONFIG:-}" ] || return 2  # another configuration')
    lines += [f"    [ ! -e {quoted(path)} ] || return 2" for path in fast.absent]
    if fast.configs:  # the configuration install-hooks read, byte for byte; a file older
        # than this script was there when install-hooks read it (no git process then)
        files = " ".join(quoted(path) for path, _ in fast.configs)
        blobs = "\n".join(blob for _, blob in fast.configs)
        newer = " || ".join(f'[ {quoted(path)} -nt "$0" ]' for path, _ in fast.configs)
        lines += [f"    if {newer}; then",
                  f"        blobs=$(alembic_autocopy_git hash-object --no-filters -- {files})"
                  " || return 2",
                  f'        [ "$blobs" = {quoted(blobs)} ] || return 2',
                  "    fi"]
    lines.append("    alembic_autocopy_git --literal-pathspecs diff --quiet --no-ext-diff "
                 '--no-renames "$previous" -- '
                 + " ".join(quoted(path) for path in fast.diffed) + " || return 2")
    if name == "post-checkout":  # a rebase under way: post-rewrite speaks at its end
        # This worktree's git folder, read as git does from `.git` (a folder, or a file
        # `gitdir: PATH` in a linked worktree), in sh alone: git runs hooks at the root.
        lines += ["    if [ -d .git ]; then git_dir=.git",
                  "    elif [ -f .git ]; then read -r git_dir < .git || return 2;"
                  " git_dir=${git_dir#gitdir: }",
                  "    else return 2; fi",
                  '    [ -e "$git_dir/rebase-merge" ] || [ -e "$git_dir/rebase-apply" ]'
                  " && return 1"]
    return [*lines, "    return 0", "}"]


def _previous_commit_lines(name: str) -> list[str]:
    """``previous``, as ``_previous_commit`` finds it; unknown: return 2 (ask Python)."""
    if name == "post-checkout":
        nulls = "|".join(sorted(_NULL_COMMIT))
        return [f'    case $1 in ""|*[!0-9a-f]*|{nulls}) return 2 ;; esac',
                "    previous=$1"]
    if name == "post-merge":
        return ["    previous=ORIG_HEAD"]
    return ['    if [ "$1" = rebase ]; then previous=ORIG_HEAD',
            '    else previous=${input%%[!0-9a-f]*}; fi  # amend: "old new" lines',
            '    [ -n "$previous" ] || return 2']


def fast_path(root: Path, project: ProjectConfig,
              environ: Mapping[str, str] | None = None) -> FastPath | None:
    """What the script can check itself in every worktree (paths relative to ``root``), or
    None when the shell cannot be sure to answer as Python would: every run then asks Python.

    Unsure: ``ALEMBIC_CONFIG`` set, folders given as a package (``pkg:path``, found on
    sys.path) or as an absolute path, any path outside the worktree or with a control
    character in its name."""
    environ = os.environ if environ is None else environ
    if environ.get("ALEMBIC_CONFIG") or not _relocatable(project):
        return None
    configs = [path for path in (project.ini_path, project.toml_path) if path is not None]
    absent = [project.cwd / name for name, path in (("alembic.ini", project.ini_path),
                                                    ("pyproject.toml", project.toml_path))
              if path is None]
    folders = [*project.version_locations, *_env_chosen_folders(project)]
    diffed = _relative(root, [*folders, *configs, project.script_location / "env.py"])
    config_names, absent_names = _relative(root, configs), _relative(root, absent)
    if diffed is None or config_names is None or absent_names is None:
        return None
    blobs = git.run_git(["hash-object", "--no-filters", "--", *config_names], root,
                        check=False)
    ids = blobs.text.split()
    if blobs.returncode != 0 or len(ids) != len(config_names):
        return None
    return FastPath(tuple(dict.fromkeys(diffed)), tuple(zip(config_names, ids, strict=True)),
                    tuple(absent_names))


def _relative(root: Path, paths: Sequence[Path]) -> list[str] | None:
    """``paths`` relative to ``root`` (as ``migrations_changed`` computes them), or None
    when one is outside it or its name holds a control character."""
    base = root.resolve()
    names: list[str] = []
    for path in paths:
        try:
            name = str(path.resolve().relative_to(base)) or "."
        except ValueError:
            return None
        if any(ord(character) < 32 or ord(character) == 127 for character in name):
            return None
        names.append(name)
    return names


def _relocatable(project: ProjectConfig) -> bool:
    """Does the configuration name its folders so that they are found at the same place in
    every worktree (relative paths, ``%(here)s``), not as a package or an absolute path?"""
    return not any(":" in value or os.path.isabs(value)
                   for value in _configured_folders(project))


def _configured_folders(project: ProjectConfig) -> list[str]:
    """The configuration's own words for the folders, before ``%(here)s`` and packages."""
    import configparser

    values: list[str] = []
    if project.ini_path is not None:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(project.ini_path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            return [":"]  # unreadable here: Python will say why
        values += [parser.get(section, key, fallback="")
                   for section in (project.section, TOOL_SECTION)
                   for key in ("script_location", "version_locations")]
    if project.toml_path is not None:
        tables = _toml_tables(project.toml_path)
        if tables is None:
            return [":"]
        for table in tables:
            for key in ("script_location", "version_locations"):
                value = table.get(key, "")
                values += [str(item) for item in (value if isinstance(value, list)
                                                  else [value])]
    return values


def _toml_tables(path: Path) -> list[Mapping[str, Any]] | None:
    """``[tool.alembic]`` and ``[tool.alembic-autocopy]`` of ``path`` (None: unreadable)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        with open(path, "rb") as handle:
            tool = tomllib.load(handle).get("tool", {})
    except (tomllib.TOMLDecodeError, OSError):
        return None
    if not isinstance(tool, dict):
        return None
    return [table for table in (tool.get("alembic"), tool.get(TOOL_SECTION))
            if isinstance(table, dict)]


def _env_chosen_folders(project: ProjectConfig) -> tuple[Path, ...]:
    """The folders env.py chose at its last run when they differ from the configuration's
    (e.g. one per dialect): diffed too, so a change there still reaches Python."""
    # install-hooks only: the hook's start never pays
    from alembic_autocopy.sources.inventory import remembered_env_locations

    return remembered_env_locations(project).version_locations


def install(worktree: Path, settings: HookSettings) -> list[HookChange]:
    """Write the three hooks; keep any foreign hook as ``<name>.legacy``. Validates all three
    before changing anything."""
    folder = hooks_dir(worktree)
    refuse_tracked_folder(worktree, folder)
    for name in HOOK_TYPES:
        path, legacy = folder / name, folder / (name + LEGACY_SUFFIX)
        present = path.exists() or path.is_symlink()
        if present and not is_ours(path) and (legacy.exists() or legacy.is_symlink()):
            raise PlacementError(
                f"cannot keep your {path}: {legacy.name} exists too",
                hint=f"merge the two by hand (or remove {legacy}), then run install-hooks again")
    folder.mkdir(parents=True, exist_ok=True)
    changes: list[HookChange] = []
    for name in HOOK_TYPES:
        path, legacy = folder / name, folder / (name + LEGACY_SUFFIX)
        kept: Path | None = legacy if legacy.exists() else None
        action = "installed"
        if path.exists() or path.is_symlink():
            if is_ours(path):
                action = "updated"
            else:
                os.rename(path, legacy)
                kept = legacy
        _write_executable(path, hook_script(name, settings))
        changes.append(HookChange(name, path, action, kept))
    return changes


def _write_executable(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.alembic-autocopy-tmp")
    temporary.write_text(text, encoding="utf-8")
    os.chmod(temporary, 0o755)
    os.replace(temporary, path)


def uninstall(worktree: Path) -> list[HookChange]:
    """Remove our hooks; put back the ``.legacy`` ones. Leaves anyone else's hook alone."""
    folder = hooks_dir(worktree)
    refuse_tracked_folder(worktree, folder)
    changes: list[HookChange] = []
    for name in HOOK_TYPES:
        path, legacy = folder / name, folder / (name + LEGACY_SUFFIX)
        present = path.exists() or path.is_symlink()
        if present and not is_ours(path):
            changes.append(HookChange(name, path, "not-ours"))
            continue
        if present:
            path.unlink()
        if legacy.exists() or legacy.is_symlink():
            os.rename(legacy, path)
            changes.append(HookChange(name, path, "restored", legacy))
        else:
            changes.append(HookChange(name, path, "removed" if present else "absent"))
    return changes


def installed(worktree: Path) -> dict[str, bool]:
    """Which of the three hooks are ours (for ``status``)."""
    folder = hooks_dir(worktree)
    return {name: is_ours(folder / name) for name in HOOK_TYPES}


# --- running (what the installed script calls) -------------------------------------------------

class _BadArguments(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _BadArguments(message)  # one line from main(), not a usage screen


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """``HOOK [options] -- GIT'S ARGUMENTS``: split at ``--`` by hand, as git's arguments may
    look like anything."""
    words = list(sys.argv[1:] if argv is None else argv)
    ours, hook_args = (words[:words.index("--")], words[words.index("--") + 1:]) \
        if "--" in words else (words, [])
    parser = _Parser(prog="python -m alembic_autocopy.hooks")
    parser.add_argument("hook", choices=[*HOOK_TYPES, "pre-commit"],
                        help="the git hook being run; pre-commit: read PRE_COMMIT_* variables")
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("-c", "--config", action="append", default=[])
    parser.add_argument("-n", "--name", default="alembic")
    parser.add_argument("-x", action="append", default=[])
    parser.add_argument("--auto-upgrade", action="store_true")
    options = parser.parse_args(ours)
    options.hook_args = hook_args
    return options


def _from_pre_commit(environ: dict[str, str]) -> tuple[str, list[str]]:
    """The hook and its git arguments, from what the pre-commit framework exports."""
    if "PRE_COMMIT_CHECKOUT_TYPE" in environ:
        return "post-checkout", [environ.get("PRE_COMMIT_FROM_REF", ""),
                                 environ.get("PRE_COMMIT_TO_REF", ""),
                                 environ["PRE_COMMIT_CHECKOUT_TYPE"]]
    if "PRE_COMMIT_IS_SQUASH_MERGE" in environ:
        return "post-merge", [environ["PRE_COMMIT_IS_SQUASH_MERGE"]]
    if "PRE_COMMIT_REWRITE_COMMAND" in environ:
        return "post-rewrite", [environ["PRE_COMMIT_REWRITE_COMMAND"]]
    return "pre-commit", []


def _previous_commit(hook: str, hook_args: Sequence[str], stdin_text: str) -> str | None:
    """The commit the worktree was at before git acted (None: unknown, check everything)."""
    if hook == "post-checkout":
        previous = hook_args[0] if hook_args else ""
        return None if not previous or previous in _NULL_COMMIT else previous
    if hook == "post-merge":
        return "ORIG_HEAD"
    if hook == "post-rewrite":
        if hook_args and hook_args[0] == "rebase":
            return "ORIG_HEAD"
        first = stdin_text.split()  # amend: "old new"
        return first[0] if first else None
    return None


def _busy(root: Path) -> bool:
    """A rebase is under way: git runs post-checkout at its start; post-rewrite follows."""
    result = git.run_git(["rev-parse", "--path-format=absolute", "--git-path", "rebase-merge",
                          "--git-path", "rebase-apply"], root, check=False)  # one process
    return any(Path(line).exists() for line in result.text.splitlines() if line)


def migrations_changed(root: Path, previous: str, version_locations: Sequence[Path]) -> bool:
    """Did any file under the version locations change between ``previous`` and now?"""
    relative: list[str] = []
    for location in version_locations:
        try:
            relative.append(str(location.resolve().relative_to(root.resolve())) or ".")
        except ValueError:
            return True  # outside this worktree: git cannot tell
    result = git.run_git(["--literal-pathspecs", "diff", "--quiet", "--no-ext-diff",
                          "--no-renames", previous, "--", *relative], root, check=False)
    return result.returncode != 0  # 1: changed; anything else (no ORIG_HEAD...): check


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """env.py's logging and Alembic's INFO lines would break the one-line promise."""
    if os.environ.get(VERBOSE_VARIABLE):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in (*saved, devnull):
            os.close(descriptor)


def run_hook(options: argparse.Namespace, root: Path, stdin_text: str = "") -> str | None:
    """Do the hook's work; return its one line (None: nothing worth saying)."""
    hook, hook_args = options.hook, list(options.hook_args)
    if hook == "pre-commit":
        hook, hook_args = _from_pre_commit(dict(os.environ))
    if hook == "post-checkout" and len(hook_args) >= 3 and hook_args[2] == "0":
        return None  # a file checkout (`git checkout -- path`), not a branch switch
    if hook == "post-checkout" and _busy(root):
        return None  # post-rewrite follows at the end (the rebase folder is still there then)
    folder = (root / options.project_dir).resolve()
    if not folder.is_dir():
        return None  # this branch does not have the project
    from_user = folder_from_user(root, options.project_dir, os.environ.get("GIT_PREFIX"))
    # git runs hooks from the worktree root; Alembic resolves prepend_sys_path (the
    # template's ".") and relative paths from the current folder: run where the hooks were
    # installed, where the user runs `alembic` (e.g. backend/), with the sys.path it has there.
    os.chdir(folder)
    try:
        project = load_project(options.config, options.name, options.x, cwd=folder)
    except AutocopyError as error:
        return f"{PREFIX} skipped: {error.message}"
    previous = _previous_commit(hook, hook_args, stdin_text)
    if previous is not None and not migrations_changed(root, previous,
                                                       project.version_locations):
        return NOTHING_CHANGED
    try:
        with _silenced():
            return _check_or_repair(project, options.auto_upgrade, options, from_user)
    except AutocopyError as error:
        return (f"{PREFIX} check failed: {error.message} "
                f"(`{suggested_command(options, 'check', from_user)}` explains)")


def folder_from_user(root: Path, project_dir: str, git_prefix: str | None) -> str:
    """The project folder as seen from where the user typed the git command. git runs hooks
    at the worktree root but exports that folder as ``GIT_PREFIX`` (relative to the root);
    without it (another program ran the hook), the absolute path: right from anywhere."""
    project = root / project_dir
    if git_prefix is None:
        return str(project.resolve())
    return os.path.relpath(project, root / git_prefix)


def suggested_command(options: argparse.Namespace, verb: str, folder: str = ".") -> str:
    """The command to type in the user's folder, ``folder`` leading from there to the
    project: ``cd ../backend && alembic-autocopy -c x.ini upgrade`` (the configuration
    paths stay relative to the project folder, where install-hooks read them)."""
    words = ["alembic-autocopy"]
    for config in options.config:
        words += ["-c", config]
    if options.name != "alembic":
        words += ["-n", options.name]
    for x_arg in options.x:
        words += ["-x", x_arg]
    command = shlex.join([*words, verb])
    if folder in (".", ""):
        return command
    return f"cd {shlex.quote(folder)} && {command}"


def _check_or_repair(project: ProjectConfig, auto_upgrade: bool,
                     options: argparse.Namespace | None = None, from_user: str = ".") -> str:
    # Imported here: the common case above (nothing changed) never pays for them.
    from alembic_autocopy import repair
    from alembic_autocopy.core.model import Outcome
    from alembic_autocopy.core.wording import blocked_message
    from alembic_autocopy.workflow import events

    if auto_upgrade:
        report = events.repair(project)
        brought = len(report.situation.plan.bring)
        heads = ", ".join(report.heads_after) or "(empty)"
        if brought or report.applied:
            return (f"{PREFIX} brought in {brought} migration(s), applied "
                    f"{len(report.applied)}; database heads: {heads}")
        return f"{PREFIX} OK, the database is current ({heads})"
    situation = repair.assess(project, repair.Options())
    plan = situation.plan
    if plan.outcome is Outcome.NOTHING_TO_DO and not situation.applied:
        return f"{PREFIX} OK, the database is empty (no revision applied yet)"
    if plan.outcome is Outcome.NOTHING_TO_DO:
        heads = ", ".join(situation.applied)
        return f"{PREFIX} OK, this worktree knows every revision the database applied ({heads})"
    if options is None:
        options = argparse.Namespace(config=[], name="alembic", x=[], project_dir=".")
    if plan.outcome is Outcome.PLAN:
        return (f"{PREFIX} the database holds {len(plan.unknown_applied)} revision(s) this "
                f"worktree lacks ({', '.join(plan.unknown_applied)}): run "
                f"`{suggested_command(options, 'upgrade', from_user)}`")
    return (f"{PREFIX} {blocked_message(plan)} "
            f"(`{suggested_command(options, 'check', from_user)}` explains)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the installed scripts: one line, exit 0, whatever happens."""
    line: str | None
    try:
        options = _parse(argv)
        os.environ[IN_HOOK_VARIABLE] = "1"
        stdin_text = ""
        if options.hook == "post-rewrite" and not sys.stdin.isatty():
            stdin_text = sys.stdin.read()
        line = run_hook(options, Path.cwd(), stdin_text)
    except _BadArguments as error:  # a hook script written by another version
        line = f"{PREFIX} hook not run ({error}): run `alembic-autocopy install-hooks` again"
    except BaseException as error:  # never let git see a failure from a post-hook
        line = f"{PREFIX} hook failed: {type(error).__name__}: {error}"
    if line:
        from alembic_autocopy.core.redaction import mask_passwords, terminal_safe

        print(terminal_safe(mask_passwords(line)), flush=True)  # outside text escaped
    if argv is None:  # a git hook's process ends here: as main.ending_process, without
        import gc  # importing main.py (argparse) on the hook's fast path

        gc.freeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
