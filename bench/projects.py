"""The projects bench/run.py and bench/reading.py measure, built once under a folder and
reused (a marker file says a build finished; run.py's ``--rebuild`` starts again).

Every project is made by ``alembic init`` (SQLite), with a chain of migrations written as
Alembic's template writes them, committed in git with fixed dates.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness import GIT_DATE, PYTHON, call, python_command

MIGRATION = '''"""{message}

Revision ID: {rev}
Revises: {down_text}
Create Date: 2024-01-02 03:04:05.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = {rev!r}
down_revision: Union[str, Sequence[str], None] = {down!r}
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    pass


def downgrade() -> None:
    """Downgrade schema."""
    pass
'''

VERSIONS = "migrations/versions"


def rev(prefix: str, number: int) -> str:
    return f"{prefix}{number:0{12 - len(prefix)}x}"


def migration(rev_id: str, down: str | None, message: str) -> str:
    return MIGRATION.format(rev=rev_id, down=down, down_text=down or "", message=message)


def chain_files(prefix: str, count: int, down: str | None, what: str) -> dict[str, str]:
    """``count`` migrations in a chain on top of ``down``: {path in the repository: text}."""
    files = {}
    for number in range(1, count + 1):
        rev_id = rev(prefix, number)
        files[f"{VERSIONS}/{rev_id}_{what}_{number}.py"] = migration(
            rev_id, down, f"{what} {number}")
        down = rev_id
    return files


def last_rev(files: Mapping[str, str]) -> str:
    return Path(list(files)[-1]).name.split("_", 1)[0]


@dataclass
class Project:
    """A repository and its worktrees; commands run in ``here``."""

    root: Path
    worktrees: list[Path]
    database: Path

    @property
    def here(self) -> Path:
        return self.worktrees[0]

    @property
    def version_dirs(self) -> list[Path]:
        return [w / "migrations" / "versions" for w in self.worktrees]

    @property
    def url(self) -> str:
        return f"sqlite:///{self.database}"


def init_project(repo: Path, database: Path, migrations: int, env: Mapping[str, str]) -> str:
    """An Alembic project with a chain of ``migrations``, committed; returns its head."""
    repo.mkdir(parents=True)
    call(["git", "init", "-q", "-b", "main"], repo, env)
    call([PYTHON, "-m", "alembic", "init", "migrations"], repo, env)
    ini = repo / "alembic.ini"
    text = ini.read_text(encoding="utf-8").replace(
        "sqlalchemy.url = driver://user:pass@localhost/dbname",
        f"sqlalchemy.url = sqlite:///{database}")
    ini.write_text(text, encoding="utf-8")
    (repo / ".gitignore").write_text("__pycache__/\n*.py[cod]\n", encoding="utf-8")
    files = chain_files("a", migrations, None, "step")
    for path, body in files.items():
        (repo / path).write_text(body, encoding="utf-8")
    call(["git", "add", "-A"], repo, env)
    call(["git", "commit", "-q", "-m", "Alembic project"], repo, env)
    return last_rev(files)


def fast_import_branch(branch: str, files: Mapping[str, str], message: str) -> bytes:
    """A git fast-import command: commit ``files`` on top of main as ``branch``."""
    head = (f"commit refs/heads/{branch}\ncommitter Bench <bench@example.invalid> {GIT_DATE}\n"
            f"data {len(message.encode())}\n").encode() + message.encode() + b"\n"
    chunks = [head, b"from refs/heads/main^0\n"]
    for path, text in files.items():
        body = text.encode()
        chunks.append(f"M 100644 inline {path}\ndata {len(body)}\n".encode() + body + b"\n")
    chunks.append(b"\n")
    return b"".join(chunks)


def _fresh(root: Path, marker: Path) -> bool:
    """True when ``root`` holds a finished build; otherwise empties it."""
    if marker.exists():
        return True
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    return False


def stamp_heads(worktree: Path, env: Mapping[str, str]) -> None:
    """The database at ``worktree``'s heads. The migrations do nothing, so a stamp leaves
    it as an upgrade would, in seconds instead of minutes at 5,000 migrations."""
    call([*python_command(), "-m", "alembic", "stamp", "heads"], worktree, env)


def fleet(root: Path, worktrees: int, migrations: int, branches: int,
          env: Mapping[str, str]) -> Project:
    """``worktrees`` worktrees of a chain of ``migrations`` (all at main), ``branches``
    branches in git objects only (3 migrations of their own each); the database at main's
    head: nothing to do anywhere."""
    names = [root / "Proj"] + [root / f"Proj-wt{n:02d}" for n in range(1, worktrees)]
    project = Project(root, names, root / "shared.db")
    marker = root / "complete"
    if _fresh(root, marker):
        return project
    started = time.perf_counter()
    head = init_project(project.here, project.database, migrations, env)
    stream = [fast_import_branch(f"br{b:02d}", chain_files(f"b{b:02d}", 3, head, f"branch{b}"),
                                 f"branch {b}") for b in range(1, branches + 1)]
    if stream:
        call(["git", "fast-import", "--quiet"], project.here, env, stdin=b"".join(stream))
    for number, path in enumerate(names[1:], 1):
        call(["git", "worktree", "add", "-q", "-b", f"wt{number:02d}", str(path), "main"],
             project.here, env)
    stamp_heads(project.here, env)
    marker.write_text(f"built in {time.perf_counter() - started:.1f} s\n", encoding="utf-8")
    return project


@dataclass
class Arrival:
    """``here`` (main) lacks the ``count`` migrations that ``sibling`` committed and applied
    to the shared database; ``plain`` is another worktree of main, where plain Alembic is
    given the same files (``arrived``, kept aside) before each of its runs."""

    project: Project
    sibling: Path
    plain: Path
    arrived: Path  # a folder holding the arriving files
    names: list[str]


def arrival(root: Path, base: int, count: int, env: Mapping[str, str]) -> Arrival:
    here, sibling, plain = root / "Proj", root / "Proj-sibling", root / "Proj-plain"
    project = Project(root, [here, sibling, plain], root / "shared.db")
    arrived = root / "arriving"
    result = Arrival(project, sibling, plain, arrived, [])
    marker = root / "complete"
    if not _fresh(root, marker):
        head = init_project(here, project.database, base, env)
        files = chain_files("c", count, head, "arrived")
        call(["git", "fast-import", "--quiet"], here, env,
             stdin=fast_import_branch("sibling", files, f"{count} migrations"))
        call(["git", "worktree", "add", "-q", str(sibling), "sibling"], here, env)
        call(["git", "worktree", "add", "-q", "-b", "plain", str(plain), "main"], here, env)
        arrived.mkdir()
        for path, body in files.items():
            (arrived / Path(path).name).write_text(body, encoding="utf-8")
        stamp_heads(sibling, env)
        for worktree in (here, plain):  # warms main's own bytecode in both
            call([*python_command(), "-m", "alembic", "heads"], worktree, env)
        marker.write_text("built\n", encoding="utf-8")
    result.names = sorted(p.name for p in arrived.iterdir())
    return result


_SET_ASIDE = itertools.count()


def remove_arrived(worktree: Path, names: list[str], set_aside: Path | None = None) -> None:
    """Take the arrived files (and any bytecode of them) out of ``worktree``'s versions.

    ``set_aside``: move them there instead of deleting them (empty it after the row). ext4
    does not reuse an inode freed less than a minute ago: each file created in a block group
    with thousands of them scans past every one (``recently_deleted``), 0.5-1 ms per file
    here instead of 0.03. Deleting 1,000 files before every run builds exactly that, which
    no user's repair meets; a rename frees no inode."""
    versions = worktree / "migrations" / "versions"
    doomed = [versions / name for name in names]
    doomed += [cached for name in names
               for cached in (versions / "__pycache__").glob(f"{name[:-3]}.*.pyc")]
    if set_aside is not None:
        set_aside.mkdir(parents=True, exist_ok=True)
    for path in doomed:
        if set_aside is None:
            path.unlink(missing_ok=True)
        elif path.exists():
            path.rename(set_aside / f"{next(_SET_ASIDE)}-{path.name}")


@dataclass
class HookRepos:
    """Two identical repositories, two branches each that differ in a file that is not a
    migration; ``hooked`` has alembic-autocopy's hooks installed."""

    plain: Path
    hooked: Path


def hook_repos(root: Path, migrations: int, env: Mapping[str, str]) -> HookRepos:
    repos = HookRepos(root / "plain" / "Proj", root / "hooked" / "Proj")
    marker = root / "complete"
    if _fresh(root, marker):
        # The scripts as the code under test writes them, not as a cached earlier run did.
        call([*python_command(), "-m", "alembic_autocopy", "install-hooks"], repos.hooked, env)
        return repos
    for repo in (repos.plain, repos.hooked):
        init_project(repo, repo.parent / "dev.db", migrations, env)
        stamp_heads(repo, env)
        call(["git", "checkout", "-q", "-b", "docs"], repo, env)
        (repo / "NOTES.md").write_text("notes\n", encoding="utf-8")
        call(["git", "add", "NOTES.md"], repo, env)
        call(["git", "commit", "-q", "-m", "notes"], repo, env)
        call(["git", "checkout", "-q", "main"], repo, env)
    call([*python_command(), "-m", "alembic_autocopy", "install-hooks"], repos.hooked, env)
    marker.write_text("built\n", encoding="utf-8")
    return repos
