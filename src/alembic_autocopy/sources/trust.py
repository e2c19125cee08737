"""Which source files may be copied: migration files are code the next upgrade executes.

A file found in another worktree or a configured folder is refused when someone other than
the user could have written it: the file, or a folder between the searched tree's root and
the file, is world-writable, or belongs to another user than the one running the tool (or
root). A symlink that leads out of the searched tree is not followed. This worktree's own
files are never judged: Alembic runs them whatever this tool says.

Two moments, to keep the scan cheap: while scanning, each FOLDER is judged once (cached) and
each file's real path is compared with its tree (no system call per file), so a refused
source never becomes a candidate and another copy can be chosen; before copying, each file
that will really be copied is judged in full (its own mode and owner too). Only metadata is
looked at; a refused file is still parsed (never imported), so the error can name the
revision it would have provided.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from alembic_autocopy.core.errors import AutocopyError
from alembic_autocopy.core.model import Candidate

ALLOW_HINT = ("check it; if you trust it, run again with --allow-untrusted-source "
              "(or set allow_untrusted_source = true in [tool.alembic-autocopy])")


class UntrustedSource(AutocopyError):
    """A migration the plan needs is only available from a source others could write."""


def _current_uid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else -1


class TrustJudge:
    """Judges files under searched trees; remembers each folder's verdict."""

    def __init__(self, uid: int | None = None) -> None:
        self.uid = _current_uid() if uid is None else uid
        self._folders: dict[str, str | None] = {}
        self._real_folders: dict[str, str] = {}

    def tree_reason(self, real: str, root: str) -> str | None:
        """Why the file whose real path is ``real``, found under the searched tree ``root``,
        must not be used (a symlink out of the tree, an untrusted folder), or None. Costs no
        system call per file: folders are judged once."""
        real_root = self._real_folders.get(root)
        if real_root is None:
            real_root = self._real_folders[root] = os.path.realpath(root)
        if not _inside(real, real_root):
            return f"it is a symlink leading out of {root} (to {real}): not followed"
        folder = os.path.dirname(real)
        while _inside(folder, real_root):
            verdict = self._folders.get(folder, "")
            if verdict == "":
                verdict = self._folders[folder] = self._judge(folder, "folder")
            if verdict:
                return verdict
            if folder == real_root:
                break
            folder = os.path.dirname(folder)
        return None

    def file_reason(self, path: str, root: str) -> str | None:
        """The full judgement of one file about to be copied: its tree, then the file."""
        folder, name = os.path.split(path)
        real_folder = self._real_folders.get(folder)  # each folder resolved once (not per file)
        if real_folder is None:
            real_folder = self._real_folders[folder] = os.path.realpath(folder)
        real = os.path.join(real_folder, name)
        if name in ("", ".", "..") or os.path.islink(real):
            real = os.path.realpath(real)
        return self.tree_reason(real, root) or self._judge(real, "file")

    def _judge(self, path: str, what: str) -> str | None:
        if self.uid < 0:  # no POSIX ownership on this platform
            return None
        try:
            info = os.stat(path)
        except OSError:
            return None  # unreadable or gone: the reader reports it
        if info.st_mode & stat.S_IWOTH:
            return f"the {what} {path} is writable by every user"
        if info.st_uid not in (self.uid, 0):
            return (f"the {what} {path} belongs to {_user_name(info.st_uid)}, "
                    "not to the user running alembic-autocopy")
        return None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _user_name(uid: int) -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def refused_message(revision: str, path: str, reason: str) -> str:
    return (f"revision {revision} is needed, but the only file that holds it, {path}, is "
            f"not trusted: {reason}")


def check_copies(candidates: Iterable[Candidate], judge: TrustJudge | None = None) -> None:
    """Raise UntrustedSource for the first file about to be copied that others could have
    written (checked right before copying, after the plan)."""
    judge = judge or TrustJudge()
    for candidate in candidates:
        location = candidate.location
        if not location.kind.is_file or not location.path or not location.worktree:
            continue
        reason = judge.file_reason(location.path, location.worktree)
        if reason:
            raise UntrustedSource(
                f"refusing to copy revision {candidate.revision} from {location.path}: "
                f"{reason}", hint=ALLOW_HINT)


def check_unresolved(unresolved: Iterable[str],
                     refused: Iterable[tuple[Candidate, str]]) -> None:
    """Raise UntrustedSource when a revision the plan could not find was refused while
    scanning: the generic "found nowhere" would hide the real reason."""
    wanted = set(unresolved)
    for candidate, reason in refused:
        if candidate.revision in wanted:
            raise UntrustedSource(
                refused_message(candidate.revision, candidate.location.path or "?", reason),
                hint=ALLOW_HINT)
