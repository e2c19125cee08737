"""Which source files may be copied: migration files are code the next upgrade executes.

A file found in another worktree or a configured folder is refused when someone other than
the user could have written it: the file, or a folder between the searched tree's root and
the file, is world-writable, or belongs to another user than the one running the tool (or
root). A symlink that leads out of the searched tree is not followed. This worktree's own
files are never judged: Alembic runs them whatever this tool says.

Only metadata is looked at (``stat``); a refused file is still parsed (never imported), so
the error can name the revision it would have provided.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

ALLOW_HINT = ("check the file; if you trust it, run again with --allow-untrusted-source "
              "(or set allow_untrusted_source = true in [tool.alembic-autocopy])")


@dataclass
class TrustJudge:
    """Judges files under searched trees; remembers each folder's verdict."""

    uid: int = field(default_factory=lambda: os.geteuid() if hasattr(os, "geteuid") else -1)
    _folders: dict[str, str | None] = field(default_factory=dict)

    def reason(self, path: str, real: str, root: str) -> str | None:
        """Why the file at ``path`` (resolving to ``real``) under the searched tree ``root``
        must not be copied, or None when it may be."""
        real_root = os.path.realpath(root)
        if not _inside(real, real_root):
            return f"it is a symlink leading out of {root} (to {real}): not followed"
        problem = self._judge(real, is_folder=False)
        if problem:
            return problem
        folder = os.path.dirname(real)
        while _inside(folder, real_root):
            if folder not in self._folders:
                self._folders[folder] = self._judge(folder, is_folder=True)
            if self._folders[folder]:
                return self._folders[folder]
            if folder == real_root:
                break
            folder = os.path.dirname(folder)
        return None

    def _judge(self, path: str, is_folder: bool) -> str | None:
        if self.uid < 0:  # no POSIX ownership on this platform
            return None
        try:
            info = os.stat(path)
        except OSError:
            return None  # unreadable or gone: the reader reports it
        what = "folder" if is_folder else "file"
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
