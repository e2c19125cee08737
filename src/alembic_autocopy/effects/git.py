"""Every git call goes through here: argument lists (never a shell), NUL-separated output,
errors that carry the command and what git said, and an environment stripped of the
variables git sets inside hooks (``GIT_DIR``...) so a call aimed at another worktree never
acts on the wrong one.
"""

# Annotations evaluated, not strings (no `from __future__ import annotations`): a NamedTuple
# compiles each string field's type at import (tests/test_imports.py says why).

import contextlib
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from alembic_autocopy.core.errors import AutocopyError, GitError

# Set by git for hooks and by some wrappers; any of them redirects a git call elsewhere.
_REDIRECTING_VARIABLES = (
    "GIT_DIR", "GIT_INDEX_FILE", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_PREFIX",
    "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES", "GIT_QUARANTINE_PATH",
)


def no_git_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a git call: without hook-set redirections, without optional locks
    (a read must never make a concurrent ``git`` command of the user fail on index.lock)."""
    env = {key: value for key, value in (os.environ if base is None else base).items()
           if key not in _REDIRECTING_VARIABLES}
    env["GIT_OPTIONAL_LOCKS"] = "0"
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("LC_ALL", "C")
    return env


class GitResult(NamedTuple):
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "surrogateescape")


def run_git(args: Sequence[str], cwd: Path | str, *, check: bool = True,
            input_bytes: bytes | None = None, timeout: float | None = None) -> GitResult:
    """Run ``git ARGS`` in ``cwd``; raise GitError (with stderr) on failure when ``check``.
    A call started earlier with the same arguments in the same folder (``start_early``)
    gives its output instead."""
    command = ["git", *args]
    started = _STARTED.pop((tuple(args), os.fspath(cwd)), None) if input_bytes is None else None
    try:
        if started is not None:
            try:
                stdout, stderr = started.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                started.kill()  # as subprocess.run does with its own
                started.communicate()
                raise
            returncode = started.returncode
        else:
            completed = subprocess.run(
                command, cwd=str(cwd), input=input_bytes, capture_output=True,
                env=no_git_env(), timeout=timeout, check=False,
            )
            stdout, stderr, returncode = completed.stdout, completed.stderr, completed.returncode
    except FileNotFoundError as error:
        if not os.path.isdir(cwd):  # the folder, not git, is what is missing
            raise AutocopyError(
                f"folder not found: {cwd}",
                hint="it was moved or deleted meanwhile; run the command again from an "
                     "existing worktree (`git worktree prune` forgets deleted ones)") from error
        raise AutocopyError("git is not installed (or not on PATH)",
                            hint="install git; alembic-autocopy needs it") from error
    except NotADirectoryError as error:
        raise AutocopyError(f"not a folder: {cwd}") from error
    result = GitResult(returncode, stdout, stderr.decode("utf-8", "replace"))
    if check and returncode != 0:
        raise GitError(command, returncode, result.text, result.stderr, str(cwd))
    return result


# Read-only git calls started before they are asked for (``start_early``), by (args, folder).
_STARTED: dict[tuple[tuple[str, ...], str], subprocess.Popen[bytes]] = {}


def start_early(args: Sequence[str], cwd: Path | str) -> None:
    """Start ``git ARGS`` in ``cwd`` now, for the ``run_git`` that will ask for it: it runs
    while Python reads the index and the folders (a warm ``find`` waits on three git calls
    in turn otherwise: the find-small row of bench/run.py). Only for calls that change
    nothing; what nobody took is ended by ``end_started``. A failure to start is left to
    ``run_git``, which reports it."""
    key = (tuple(args), os.fspath(cwd))
    if key in _STARTED:
        return
    with contextlib.suppress(OSError):
        _STARTED[key] = subprocess.Popen(["git", *args], cwd=key[1], stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=no_git_env())


def end_started() -> None:
    """End the calls ``start_early`` started that no ``run_git`` took (a search that stopped
    early, another folder asked): no process is left behind."""
    while _STARTED:
        _, process = _STARTED.popitem()
        process.kill()
        process.communicate()


def git_text(args: Sequence[str], cwd: Path | str) -> str:
    return run_git(args, cwd).text.strip()


def toplevel(path: Path) -> Path | None:
    """The root of the worktree holding ``path``, or None outside any git worktree."""
    return locate(path)[0]


# Folder -> (its worktree root, its repository's common git dir): asked once per process.
# A root is remembered as its own folder too: a repair asks about the root again and again
# (which paths git tracks, where the event log goes), one git process each otherwise.
_LOCATED: dict[str, tuple[Path | None, Path | None]] = {}


def locate(path: Path) -> tuple[Path | None, Path | None]:
    """(root of the worktree holding ``path``, common git dir of its repository), each None
    when unknown (outside git; a bare repository has no worktree root), from ONE git
    process, remembered for the process: every run needs both (the scan and the index)."""
    key = os.fspath(path)
    known = _LOCATED.get(key)
    if known is None:
        result = run_git(["rev-parse", "--path-format=absolute", "--git-common-dir",
                          "--show-toplevel"], path, check=False)
        lines = result.text.splitlines()
        if result.returncode == 0 and len(lines) == 2 and all(lines):
            known = (Path(lines[1]), Path(lines[0]))
        else:  # outside a worktree: ask for each on its own
            common = run_git(["rev-parse", "--path-format=absolute", "--git-common-dir"],
                             path, check=False)
            text = common.text.strip()
            known = (None, Path(text) if common.returncode == 0 and text else None)
        known = _LOCATED[key] = known
        if known[0] is not None:
            _LOCATED.setdefault(os.fspath(known[0]), known)
    return known


def forget_locations() -> None:
    """Forget what ``locate`` and ``git_path`` remembered (a test that moves repositories
    around)."""
    _LOCATED.clear()
    _GIT_PATHS.clear()


def is_bare_repository(path: Path) -> bool:
    """True when ``path`` is itself a bare repository (not a folder inside one)."""
    result = run_git(["rev-parse", "--absolute-git-dir", "--is-bare-repository"], path,
                     check=False)
    lines = result.text.splitlines()
    if result.returncode != 0 or len(lines) != 2 or lines[1] != "true":
        return False
    try:
        return Path(lines[0]).resolve() == path.resolve()
    except OSError:
        return False


def common_dir(worktree: Path) -> Path:
    """The git folder shared by all worktrees (holds objects, refs, hooks, info/exclude)."""
    common = locate(worktree)[1]
    if common is not None:
        return common
    value = git_text(["rev-parse", "--path-format=absolute", "--git-common-dir"], worktree)
    return Path(value)  # not reached in a repository: git says why it is not one


# (worktree, name) -> ``--git-path``: a repair asks for its manifest's path three times.
_GIT_PATHS: dict[tuple[str, str], Path] = {}


def git_path(worktree: Path, name: str) -> Path:
    """Where git keeps ``name`` for this worktree (``--git-path``): per-worktree or common.
    Asked once per process (git's layout of a repository does not change under it)."""
    key = (os.fspath(worktree), name)
    known = _GIT_PATHS.get(key)
    if known is None:
        known = _GIT_PATHS[key] = Path(git_text(
            ["rev-parse", "--path-format=absolute", "--git-path", name], worktree))
    return known


class WorktreeInfo(NamedTuple):
    """One entry of ``git worktree list --porcelain``."""

    path: Path
    head: str | None
    branch: str | None  # full ref, e.g. refs/heads/feature-a; None when detached or bare
    bare: bool = False
    detached: bool = False
    locked: bool = False
    prunable: str | None = None  # git's reason when the folder is gone

    @property
    def branch_name(self) -> str | None:
        if self.branch and self.branch.startswith("refs/heads/"):
            return self.branch[len("refs/heads/"):]
        return self.branch


WORKTREE_LIST = ("worktree", "list", "--porcelain", "-z")


def list_worktrees(worktree: Path) -> list[WorktreeInfo]:
    """All worktrees of the repository holding ``worktree`` (main one first)."""
    raw = run_git(WORKTREE_LIST, worktree).stdout
    return parse_worktree_list(raw)


def parse_worktree_list(raw: bytes) -> list[WorktreeInfo]:
    entries: list[WorktreeInfo] = []
    fields: dict[str, str] = {}

    def flush() -> None:
        if "worktree" in fields:
            entries.append(WorktreeInfo(
                path=Path(fields["worktree"]),
                head=fields.get("HEAD"),
                branch=fields.get("branch"),
                bare="bare" in fields,
                detached="detached" in fields,
                locked="locked" in fields,
                prunable=fields.get("prunable") if "prunable" in fields else None,
            ))
        fields.clear()

    for item in raw.decode("utf-8", "surrogateescape").split("\0"):
        if not item:
            flush()
            continue
        key, _, value = item.partition(" ")
        fields[key] = value
    flush()
    return entries


def object_format(worktree: Path) -> str:
    result = run_git(["rev-parse", "--show-object-format"], worktree, check=False)
    value = result.text.strip()
    return value if result.returncode == 0 and value else "sha1"


def batch_check(worktree: Path, specs: Iterable[str]) -> dict[str, str | None]:
    """Object id of each ``<commit>:<path>`` spec (None when missing), in ONE git process."""
    spec_list = list(dict.fromkeys(specs))
    if not spec_list:
        return {}
    for spec in spec_list:
        if "\n" in spec:
            raise ValueError(f"newline in git object spec {spec!r}")
    payload = "".join(f"{spec}\n" for spec in spec_list).encode("utf-8", "surrogateescape")
    output = run_git(["cat-file", "--batch-check=%(objectname) %(objecttype)"], worktree,
                     input_bytes=payload).text.splitlines()
    found: dict[str, str | None] = {}
    for spec, line in zip(spec_list, output, strict=False):
        parts = line.split(" ")
        found[spec] = parts[0] if len(parts) == 2 and parts[1] == "blob" else None
    return found


def tree_blobs(worktree: Path, commit: str, folders: Sequence[str]) -> dict[str, str]:
    """``{path from the root: blob id}`` of every file under ``folders`` (root-relative) in
    ``commit``, in ONE git process (``ls-tree -r``); missing folders simply list nothing."""
    if not folders:
        return {}
    raw = run_git(["ls-tree", "-r", "-z", "--full-tree", commit, "--", *folders],
                  worktree).stdout
    found: dict[str, str] = {}
    for record in raw.split(b"\0"):
        meta, tab, name = record.partition(b"\t")
        parts = meta.split(b" ")
        if tab and len(parts) == 3 and parts[1] == b"blob":
            found[name.decode("utf-8", "surrogateescape")] = parts[2].decode("ascii")
    return found


def tracked(worktree: Path, paths: Sequence[Path]) -> set[Path]:
    """Which of ``paths`` (inside ``worktree``) are in the index of that worktree
    (skip-worktree entries of a sparse checkout included). Raises GitError when git cannot
    tell (e.g. a path outside the worktree): never taken as "untracked"."""
    if not paths:
        return set()
    root = os.path.realpath(toplevel(worktree) or worktree)
    inside: dict[Path, str] = {}  # compared by real path: a folder reached by a symlink too
    real_folders: dict[str, str] = {}  # each folder resolved once (500 copies: one folder)
    for path in paths:
        folder, name = os.path.split(os.fspath(path))
        if folder not in real_folders:
            real_folders[folder] = os.path.realpath(folder)
        real = os.path.join(real_folders[folder], name)
        if real.startswith(root.rstrip(os.sep) + os.sep):  # outside: not tracked HERE
            inside[path] = Path(os.path.relpath(real, root)).as_posix()
    if not inside:
        return set()
    # literal pathspecs: a name holding "*" or "[" matches itself only
    args = ["--literal-pathspecs", "ls-files", "-z", "--full-name", "--",
            *sorted(set(inside.values()))]
    raw = run_git(args, root).stdout
    names = {item.decode("utf-8", "surrogateescape") for item in raw.split(b"\0") if item}
    return {path for path, relative in inside.items() if relative in names}


def commit_dates(worktree: Path, commits: Iterable[str]) -> dict[str, str]:
    """ISO 8601 committer date of each commit, in one git process."""
    unique = [c for c in dict.fromkeys(commits) if c]
    if not unique:
        return {}
    raw = run_git(["log", "--no-walk=unsorted", "--format=%H %cI", *unique], worktree,
                  check=False).text
    dates: dict[str, str] = {}
    for line in raw.splitlines():
        commit, _, date = line.partition(" ")
        dates[commit] = date
    return dates


# Git LFS pointer files (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md): under
# 1024 bytes, first line names the spec (the pre-release "hawser" one too).
_LFS_VERSION_LINES = (b"version https://git-lfs.github.com/spec/v1\n",
                      b"version https://hawser.github.com/spec/v1\n")


def is_lfs_pointer(content: bytes) -> bool:
    """True when ``content`` is a Git LFS pointer, not the file it stands for."""
    return (len(content) < 1024 and content.startswith(_LFS_VERSION_LINES)
            and b"\noid sha256:" in content)
